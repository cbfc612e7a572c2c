"""The VNPay-style daily settlement file and its reconciliation with the gateway's payments.

The file is a CSV with a header row naming at least :data:`SETTLEMENT_REQUIRED` (amounts in ``vnp_Amount`` units,
VND × 100, as everywhere in the protocol; times ``yyyyMMddHHmmss`` in GMT+7).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from adapters.payment.port import (
    LocalPayment,
    PaymentState,
    ReconciliationReport,
    SettlementFormatError,
    SettlementRow,
)
from adapters.payment.settlement import compare_settlement
from adapters.payment.vnpay_wire import amount_from_wire, parse_time

__all__ = ["SETTLEMENT_COLUMNS", "SETTLEMENT_REQUIRED", "parse_settlement", "reconcile"]

#: Settlement file columns (header names); only the SETTLEMENT_REQUIRED ones must be present.
SETTLEMENT_COLUMNS = (
    "vnp_TxnRef",
    "vnp_TransactionNo",
    "vnp_Amount",
    "vnp_TransactionStatus",
    "vnp_PayDate",
    "vnp_BankCode",
)
SETTLEMENT_REQUIRED = ("vnp_TxnRef", "vnp_Amount", "vnp_TransactionStatus")


def _state_from_status(status: str) -> PaymentState:
    return PaymentState.PAID if status.strip() == "00" else PaymentState.FAILED


def parse_settlement(settlement_csv: str) -> list[SettlementRow]:
    """The rows of a settlement CSV (header row first; :class:`SettlementFormatError` for a bad file)."""
    text = settlement_csv.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        missing = [name for name in SETTLEMENT_REQUIRED if name not in header]
        if missing:
            raise SettlementFormatError(f"settlement file: missing columns {', '.join(missing)}")
        rows: list[SettlementRow] = []
        for record in reader:
            line = reader.line_num
            if None in record:
                raise SettlementFormatError(f"settlement file line {line}: more fields than columns")
            values = {key: (value or "").strip() for key, value in record.items()}
            if not any(values.values()):
                continue
            reference = values["vnp_TxnRef"]
            if not reference:
                raise SettlementFormatError(f"settlement file line {line}: empty vnp_TxnRef")
            try:
                amount = amount_from_wire(values["vnp_Amount"], f"settlement file line {line}")
                paid_at = parse_time(values["vnp_PayDate"]) if values.get("vnp_PayDate") else None
            except ValueError as exc:
                raise SettlementFormatError(str(exc)) from None
            rows.append(
                SettlementRow(
                    reference=reference,
                    amount_vnd=amount,
                    state=_state_from_status(values["vnp_TransactionStatus"]),
                    transaction_no=values.get("vnp_TransactionNo") or None,
                    paid_at=paid_at,
                    line=line,
                )
            )
    except csv.Error as exc:
        raise SettlementFormatError(f"settlement file line {reader.line_num}: {exc}") from None
    return rows


def reconcile(settlement_csv: str, local: Iterable[LocalPayment]) -> ReconciliationReport:
    """Compare a settlement file with the gateway's payments (see :class:`ReconciliationReport`)."""
    return compare_settlement(parse_settlement(settlement_csv), local)
