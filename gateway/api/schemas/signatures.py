"""The signature report (:meth:`signing.SignatureReport.to_json`): the answer of ``POST /api/v1/signatures/verify``,
each component's ``verification`` in the dossier view, and what ``dvc-gateway verify --json`` prints per file."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from signing.report import Format, Indication, Revocation, SubIndication, Verdict

from .base import Answer

__all__ = ["SignatureReport", "SignatureResult", "Signer"]


class Signer(Answer):
    """Who signed, as the signer's certificate says."""

    common_name: str | None
    organization: str | None
    serial_number: str | None
    identifiers: dict[str, str] = Field(
        description="tax_code, citizen_id, id_card, passport (from MST:, CCCD:, CMND:, HC:); other prefixes as written"
    )


class SignatureResult(Answer):
    """One signature: what the validator found."""

    indication: Indication
    sub_indication: SubIndication | None
    signer: Signer
    issuer: str | None
    signing_time: datetime | None = Field(description="claimed by the signer; proves nothing without a timestamp")
    timestamp_time: datetime | None
    covers_whole_document: bool
    modified_after_signing: bool
    chain: list[str]
    revocation: Revocation
    warnings: list[str]


class SignatureReport(Answer):
    """One document's signatures and the clerk's verdict."""

    file: str
    format: Format
    signed: bool
    verdict: Verdict
    originals_check_required: bool = Field(description="false only when every signature is valid")
    message: dict[str, str] = Field(description='the verdict in one sentence: {"en": "…", "vi": "…"}')
    signatures: list[SignatureResult]
