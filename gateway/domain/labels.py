"""The citizens' words for each dossier status (public lookup, SMS, the national portal's progress steps)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.domain.status import Status

__all__ = ["STATUS_LABELS_VI", "SUSPENSION_FINAL_LABEL_VI"]

STATUS_LABELS_VI: Mapping[str, str] = MappingProxyType(
    {
        Status.SUBMITTED: "Đã nộp, chờ tiếp nhận",
        Status.RECEIVED: "Đã tiếp nhận",
        Status.REFUSED: "Từ chối tiếp nhận",
        Status.PROCESSING: "Đang giải quyết",
        Status.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung hồ sơ",
        Status.FEE_REQUESTED: "Chờ thực hiện nghĩa vụ tài chính",
        Status.WITHDRAWN: "Đã rút hồ sơ",
        Status.SUSPENDED: "Tạm dừng giải quyết",
        Status.COMPLETED: "Đã có kết quả",
        Status.RETURNED: "Đã trả kết quả",
    }
)

#: Status 8 when the procedure makes suspension a final stop (the national code table's word).
SUSPENSION_FINAL_LABEL_VI = "Dừng xử lý"
