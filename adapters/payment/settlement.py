"""The provider-neutral half of a reconciliation: a settlement's rows against the gateway's payments."""

from __future__ import annotations

from collections.abc import Iterable

from adapters.payment.port import (
    AmountMismatch,
    LocalPayment,
    PaymentState,
    ReconciliationReport,
    SettlementRow,
    StatusMismatch,
)

__all__ = ["compare_settlement"]


def compare_settlement(rows: Iterable[SettlementRow], local: Iterable[LocalPayment]) -> ReconciliationReport:
    """Compare a provider's settlement rows with the gateway's payments (see :class:`ReconciliationReport`)."""
    ours: dict[str, LocalPayment] = {}
    for payment in local:
        if payment.reference in ours:
            raise ValueError(f"local payments: reference {payment.reference!r} given twice")
        ours[payment.reference] = payment
    report = ReconciliationReport()
    seen: set[str] = set()
    for row in rows:
        if row.reference in seen:
            report.duplicates.append(row)
            continue
        seen.add(row.reference)
        mine = ours.get(row.reference)
        if mine is None:
            report.missing_locally.append(row)
            continue
        consistent = True
        if mine.amount_vnd != row.amount_vnd:
            report.amount_mismatches.append(AmountMismatch(row.reference, mine.amount_vnd, row.amount_vnd))
            consistent = False
        if mine.state != row.state:
            report.status_mismatches.append(StatusMismatch(row.reference, mine.state, row.state))
            consistent = False
        if consistent:
            report.matched.append(row.reference)
    report.missing_at_provider.extend(
        p for p in ours.values() if p.reference not in seen and p.state is PaymentState.PAID
    )
    return report
