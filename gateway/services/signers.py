"""Signer and applicant: a valid signature exempts a component from the originals check only if the applicant signed.

The provincial rules forbid signing with another person's certificate, so at intake the identifiers of each valid
signer (``citizen_id``, ``id_card``, ``passport``, ``tax_code`` from the certificate subject) are compared with the
applicant's: a citizen's ``id_number``, an organisation's tax code (``tax_code``, else ``id_number``). A component
matches when one of its valid signers is the applicant (a form the citizen signed and an agency countersigned
matches). ``[signing] signer_must_match_applicant`` decides what a mismatch does: ``warn`` records a warning on the
component, ``require`` also keeps ``originals_check_required: true``.

Only identifiers are compared, never names; nothing here is logged (personal data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.services.files import PreparedFile
from signing.identity import signer_is
from signing.report import Verdict

__all__ = ["ORGANISATION_KINDS", "check_signers", "mismatch_warnings"]

#: Applicant kinds that sign with an organisation's certificate (tax code).
ORGANISATION_KINDS = frozenset({"organisation", "organization", "business", "enterprise"})

_MISMATCH = {
    "en": "The valid signature is not the applicant's: the signer's identifiers do not match the applicant's.",
    "vi": "Chữ ký số hợp lệ nhưng không phải của người nộp hồ sơ: định danh của người ký không khớp.",
}
_UNKNOWN = {
    "en": "The applicant gave no identifier to compare with the signer's.",
    "vi": "Người nộp hồ sơ chưa khai số định danh để đối chiếu với người ký.",
}


def _applicant_identifiers(applicant: Mapping[str, Any]) -> tuple[bool, list[str]]:
    organisation = str(applicant.get("kind") or "citizen").lower() in ORGANISATION_KINDS
    keys = ("tax_code", "id_number") if organisation else ("id_number",)
    values = [str(applicant[key]) for key in keys if isinstance(applicant.get(key), str) and applicant[key].strip()]
    return organisation, values


def check_signers(files: Sequence[PreparedFile], applicant: Mapping[str, Any], policy: str) -> None:
    """Set each validly signed file's ``applicant_check``: whether a valid signer is the applicant, and what the
    policy (``warn`` or ``require``) makes of it."""
    organisation, wanted = _applicant_identifiers(applicant)
    for prepared in files:
        report = prepared.report
        if report is None or report.verdict is not Verdict.VALID:
            continue  # not exempt anyway: nothing to compare
        matches = bool(wanted) and any(
            signer_is(signature.signer.identifiers, wanted, organisation=organisation)
            for signature in report.signatures
        )
        check: dict[str, Any] = {"signer_matches_applicant": matches, "policy": policy}
        if not matches:
            check["warning"] = dict(_MISMATCH if wanted else _UNKNOWN)
            check["originals_check_required"] = policy == "require"
        prepared.applicant_check = check


def mismatch_warnings(files: Sequence[PreparedFile]) -> list[dict[str, str]]:
    """History warnings for the components whose valid signature is not the applicant's and that therefore need the
    originals check (``require``); under ``warn`` the warning stays on the component."""
    return [
        {"component": f.code or f.field, "verdict": "signer_not_applicant"}
        for f in files
        if f.applicant_check is not None and f.applicant_check.get("originals_check_required")
    ]
