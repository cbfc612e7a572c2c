"""The periodic report as files: CSV (UTF-8 with a byte-order mark, so spreadsheets read the diacritics), JSON and
an Excel workbook (openpyxl), all with the same columns and Vietnamese headings (:data:`COLUMNS`).

Everything here works on the report's JSON document (:meth:`gateway.services.reports.Report.to_json`), so the API,
the command line and the daemon's monthly files give the same figures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["COLUMNS", "FORMATS", "MEDIA_TYPES", "SYSTEM_COLUMNS", "cell_text", "period_line", "render", "table_rows"]

FORMATS = ("json", "csv", "xlsx")
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

#: Each column: where its value is in a row of the report (a dotted path) and its heading.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("agency_code", "Mã cơ quan"),
    ("agency_name", "Cơ quan"),
    ("procedure_code", "Mã thủ tục"),
    ("procedure_name", "Thủ tục hành chính"),
    ("received.online", "Tiếp nhận trực tuyến"),
    ("received.in_person", "Tiếp nhận trực tiếp"),
    ("received.post", "Tiếp nhận qua bưu chính"),
    ("received.total", "Tổng số tiếp nhận mới"),
    ("transferred_in", "Nhận liên thông"),
    ("carried_over", "Kỳ trước chuyển sang"),
    ("completed.on_time", "Đã giải quyết đúng hạn"),
    ("completed.late", "Đã giải quyết quá hạn"),
    ("in_progress.on_time", "Đang giải quyết trong hạn"),
    ("in_progress.overdue", "Đang giải quyết quá hạn"),
    ("refused", "Không đủ điều kiện (từ chối)"),
    ("refusal_reasons", "Lý do từ chối"),
    ("supplement_requests", "Yêu cầu bổ sung"),
    ("supplement_reasons", "Lý do yêu cầu bổ sung"),
    ("withdrawn", "Rút hồ sơ"),
    ("stopped", "Dừng xử lý"),
    ("repeated_supplements", "Yêu cầu bổ sung nhiều lần"),
    ("originals_exempt_share", "Tỷ lệ miễn đối chiếu bản gốc (chữ ký số)"),
    ("average_processing_days", "Thời gian giải quyết bình quân (ngày làm việc)"),
    ("ratings", "Số lượt đánh giá hài lòng"),
    ("average_rating", "Mức độ hài lòng bình quân (điểm 1-5)"),
)

SYSTEM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("target", "Hệ thống nhận"),
    ("deliveries", "Số lần chuyển thành công"),
    ("retries", "Số lần gửi lại"),
    ("dead_letters", "Số thông điệp không chuyển được"),
)

_TITLE = "BÁO CÁO TÌNH HÌNH TIẾP NHẬN, GIẢI QUYẾT HỒ SƠ THỦ TỤC HÀNH CHÍNH"
_ALL_PROCEDURES = "Tổng cộng"
_ALL_AGENCIES = "Toàn tỉnh"


def _value(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def cell_text(value: Any) -> Any:
    """A value as a cell holds it: reasons as ``reason (count); …``, nothing as empty."""
    if isinstance(value, list):
        return "; ".join(f"{item['reason']} ({item['count']})" for item in value)
    return "" if value is None else value


def table_rows(document: dict[str, Any]) -> Iterator[list[Any]]:
    """Every row of the report's table: one per agency and procedure, each agency's total, the province's total."""
    for row in document["rows"]:
        yield [cell_text(_value(row, path)) for path, _ in COLUMNS]
    for row in document["agencies"]:
        yield [cell_text(_value({**row, "procedure_code": _ALL_PROCEDURES}, path)) for path, _ in COLUMNS]
    total = {**document["total"], "agency_code": _ALL_AGENCIES, "procedure_code": _ALL_PROCEDURES}
    yield [cell_text(_value(total, path)) for path, _ in COLUMNS]


def period_line(document: dict[str, Any]) -> str:
    scope = []
    if document.get("agency"):
        scope.append(f"cơ quan {document['agency']}")
    if document.get("procedure"):
        scope.append(f"thủ tục {document['procedure']}")
    line = f"Kỳ báo cáo {document['period']}: từ {document['from']} đến {document['to']}"
    return line + (f" ({', '.join(scope)})" if scope else "")


def _csv(document: dict[str, Any]) -> bytes:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow([heading for _, heading in COLUMNS])
    writer.writerows(table_rows(document))
    return ("\ufeff" + stream.getvalue()).encode("utf-8")


def _json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _sheet_rows(sheet: Any, title: str, subtitle: str, headings: list[str], rows: list[list[Any]]) -> None:
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    sheet.append([title])
    sheet.append([subtitle])
    sheet.append([])
    sheet.append(headings)
    for cell in sheet[1] + sheet[4]:
        cell.font = Font(bold=True)
    for cell in sheet[4]:
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row in rows:
        sheet.append(row)
    for index, heading in enumerate(headings, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(12, min(40, len(heading) + 2))
    sheet.freeze_panes = "A5"


def _xlsx(document: dict[str, Any]) -> bytes:
    # openpyxl is imported when a workbook is written (about 0.17 s): the daemon's every start need not pay for it.
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Báo cáo"
    rows = list(table_rows(document))
    _sheet_rows(sheet, _TITLE, period_line(document), [h for _, h in COLUMNS], rows)
    system = document["system"]
    sheet = workbook.create_sheet("Hệ thống")
    lines = [[cell_text(item.get(path)) for path, _ in SYSTEM_COLUMNS] for item in system["by_target"]]
    lines.append([_ALL_AGENCIES, system["deliveries"], system["retries"], system["dead_letters"]])
    availability = system.get("upstream_availability")
    lines.append([])
    lines.append(["Tỷ lệ sẵn sàng của hệ thống kết nối", "không ghi nhận" if availability is None else availability])
    _sheet_rows(sheet, "TÌNH HÌNH HOẠT ĐỘNG CỦA HỆ THỐNG", period_line(document), [h for _, h in SYSTEM_COLUMNS], lines)
    stream = io.BytesIO()
    workbook.save(stream)
    return stream.getvalue()


_RENDERERS: dict[str, Callable[[dict[str, Any]], bytes]] = {"json": _json, "csv": _csv, "xlsx": _xlsx}


def render(document: dict[str, Any], fmt: str) -> bytes:
    """The report ``document`` as a file of format ``fmt`` (one of :data:`FORMATS`)."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})") from None
    return renderer(document)
