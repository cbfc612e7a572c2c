"""Signer and applicant: a valid signature by someone other than the applicant (``[signing]
signer_must_match_applicant``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from signing.identity import signer_is
from tests.api_support import (
    APPLICANT,
    Gateway,
    component,
    gateway_client,
    open_runtime,
    pdf,
    signing_section,
    submission,
)
from tests.documents import sign_pdf
from tests.pki import CITIZEN_ID, TAX_CODE

pytest_plugins = ("tests.api_fixtures",)  # signed_gw: the default policy, "warn"


@pytest.fixture
async def strict_gw(tmp_path: Path, pki: Any) -> AsyncIterator[Gateway]:
    signing = {**signing_section(pki), "signer_must_match_applicant": "require"}
    with open_runtime("sqlite", tmp_path, signing=signing) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


@pytest.fixture(scope="module")
def signed_pdf(pki: Any) -> bytes:
    return sign_pdf(pdf("Don de nghi da ky"), pki.good)  # subject: CCCD:001099012345, MST:0101234567


def applicant(**fields: Any) -> dict[str, Any]:
    return {**APPLICANT, **fields}


async def submit(gw: Gateway, data: bytes, who: dict[str, Any]) -> dict[str, Any]:
    components = [component("TP1", data=data), component("TP2"), component("TP3")]
    dossier = await gw.submitted(submission(applicant=who, components=components))
    return dossier


def test_identifiers_are_compared_by_kind() -> None:
    ids = {"citizen_id": CITIZEN_ID, "tax_code": TAX_CODE}
    assert signer_is(ids, [f" {CITIZEN_ID} "], organisation=False)
    assert not signer_is(ids, [TAX_CODE], organisation=False)  # a person is named by a personal identifier
    assert signer_is(ids, [TAX_CODE], organisation=True)
    assert not signer_is(ids, [CITIZEN_ID], organisation=True)
    assert not signer_is({"passport": "b1234567"}, ["", " "], organisation=False)
    assert signer_is({"passport": "b1234567"}, ["B1234567"], organisation=False)


async def test_the_applicants_own_signature_exempts_without_warning(signed_gw: Gateway, signed_pdf: bytes) -> None:
    dossier = await submit(signed_gw, signed_pdf, applicant(id_number=CITIZEN_ID))
    tp1 = dossier["components"][0]
    assert tp1["originals_check_required"] is False
    assert tp1["verification"]["applicant_check"] == {"signer_matches_applicant": True, "policy": "warn"}


async def test_someone_elses_signature_is_a_warning_by_default(signed_gw: Gateway, signed_pdf: bytes) -> None:
    dossier = await submit(signed_gw, signed_pdf, applicant(id_number="001199054321"))
    tp1 = dossier["components"][0]
    check = tp1["verification"]["applicant_check"]
    assert check["signer_matches_applicant"] is False and check["originals_check_required"] is False
    assert "not the applicant's" in check["warning"]["en"]
    assert tp1["verification"]["verdict"] == "valid" and tp1["originals_check_required"] is False


async def test_someone_elses_signature_needs_the_originals_when_required(strict_gw: Gateway, signed_pdf: bytes) -> None:
    dossier = await submit(strict_gw, signed_pdf, applicant(id_number="001199054321"))
    tp1 = dossier["components"][0]
    assert tp1["verification"]["verdict"] == "valid"
    assert tp1["originals_check_required"] is True and tp1["verification"]["originals_check_required"] is True
    assert "TP1 is signed by someone other than the applicant" in dossier["history"][0]["note"]


async def test_an_applicant_without_identifier_cannot_be_matched(strict_gw: Gateway, signed_pdf: bytes) -> None:
    who = {key: value for key, value in APPLICANT.items() if key != "id_number"}
    tp1 = (await submit(strict_gw, signed_pdf, who))["components"][0]
    assert tp1["originals_check_required"] is True
    assert "no identifier" in tp1["verification"]["applicant_check"]["warning"]["en"]


async def test_an_organisation_matches_by_tax_code(strict_gw: Gateway, signed_pdf: bytes) -> None:
    company = applicant(kind="organisation", full_name="Công ty TNHH Thử nghiệm", id_number=None, tax_code=TAX_CODE)
    tp1 = (await submit(strict_gw, signed_pdf, company))["components"][0]
    assert tp1["originals_check_required"] is False
    # The same signer's citizen ID does not make the person the organisation.
    other = applicant(kind="organisation", id_number=CITIZEN_ID)
    tp1 = (await submit(strict_gw, signed_pdf, other))["components"][0]
    assert tp1["originals_check_required"] is True


def test_the_setting_is_refused_when_unknown() -> None:
    from gateway.config import SigningSection

    assert SigningSection().signer_must_match_applicant == "warn"
    with pytest.raises(ValueError, match="signer_must_match_applicant"):
        SigningSection(signer_must_match_applicant="sometimes")  # type: ignore[arg-type]
