"""Intake (``POST /api/v1/dossiers``): every refusal, file names and content types, signatures.

Through ``httpx.AsyncClient`` on the ASGI app (the gateways of ``tests/api_fixtures.py``).
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gateway.services.files import sanitise_filename
from gateway.store.models import Blob
from signing.sniff import reconcile_content_type, sniff_content_type
from tests.api_support import (
    AGENCY3,
    PORTAL,
    UNREGISTERED,
    Gateway,
    b64,
    component,
    gateway_client,
    open_runtime,
    pdf,
    submission,
)
from tests.documents import make_form, sign_cms, sign_pdf
from tests.intake_support import counts

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>'
)


# ---------------------------------------------------------------------------------------------------------------------
# Refusals (422)


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    body = dict(body)
    del body[key]
    return body


REFUSALS = {
    "unknown procedure": (submission(procedure_code="9.999999"), "procedure_code", "unknown procedure"),
    "agency not competent": (submission(agency_code=AGENCY3), "agency_code", "not competent"),
    "agency not registered": (
        submission(
            procedure_code="1.001193",
            agency_code=UNREGISTERED,
            fees=None,
            components=[component("TP1"), component("TP2"), component("TP3")],
        ),
        "agency_code",
        "not registered",
    ),
    "missing required component": (
        submission(components=[component("TP1"), component("TP2")]),
        "components",
        "required component TP3",
    ),
    "unknown component": (
        submission(components=[component("TP1"), component("TP2"), component("TP3"), component("TP9")]),
        "components[3].code",
        "unknown component TP9",
    ),
    "repeated component": (
        submission(components=[component("TP1"), component("TP2"), component("TP3"), component("TP2")]),
        "components[3].code",
        "more than once",
    ),
    "bad base64": (
        submission(components=[component("TP1"), component("TP2", content_base64="not*base64!"), component("TP3")]),
        "components[1].content_base64",
        "not valid base64",
    ),
    "empty file": (
        submission(components=[component("TP1"), component("TP2", content_base64=""), component("TP3")]),
        "components[1].content_base64",
        "empty",
    ),
    "type contradicting the content": (
        submission(components=[component("TP1"), component("TP2", data=PNG), component("TP3")]),
        "components[1].content_type",
        "the content is image/png",
    ),
    "fee amount": (
        submission(fees=[{"code": "LP1", "name": "Lệ phí", "amount": 100000}]),
        "fees[0].amount",
        "must be 150000 VND",
    ),
    "fee as a float": (
        submission(fees=[{"code": "LP1", "name": "Lệ phí", "amount": 150000.0}]),
        "fees[0].amount",
        "integer",
    ),
    "unknown fee": (
        submission(fees=[{"code": "LP1", "amount": 150000}, {"code": "X9", "amount": 1}]),
        "fees[1].code",
        "unknown fee",
    ),
    "missing fee": (submission(fees=[]), "fees", "fee LP1"),
    "missing applicant": (_without(submission(), "applicant"), "applicant", "missing"),
    "applicant without a name": (submission(applicant={"kind": "citizen"}), "applicant.full_name", "missing"),
    "wrong type": (submission(procedure_code=1009794), "procedure_code", "string"),
    "unknown component field": (
        submission(components=[component("TP1", path="/etc/passwd"), component("TP2"), component("TP3")]),
        "components[0].path",
        "unknown field",
    ),
    "post without an address": (submission(delivery_address=None), "delivery_address", "required"),
    "unknown channel": (submission(channel="fax"), "channel", ""),
}


@pytest.mark.parametrize(("body", "field", "message"), list(REFUSALS.values()), ids=list(REFUSALS))
async def test_refusals_are_422_with_field_details_and_change_nothing(
    gw: Gateway, body: dict[str, Any], field: str, message: str
) -> None:
    before = counts(gw)
    response = await gw.submit(body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(d["field"] == field and message in d["message"] for d in error["details"]), error["details"]
    assert counts(gw) == before


async def test_every_problem_is_reported_at_once(gw: Gateway) -> None:
    body = submission(
        components=[component("TP1", content_base64="%%%"), component("TP9")],
        fees=[{"code": "LP1", "amount": 1}],
    )
    response = await gw.submit(body)
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert {"components[1].code", "components", "fees[0].amount", "components[0].content_base64"} <= fields


async def test_oversized_files_are_refused(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, server={"max_file_bytes": 2000}) as runtime:
        async for gw in gateway_client(runtime):
            big = component("TP2", data=pdf("x") + b"%" * 3000)
            response = await gw.submit(submission(components=[component("TP1"), big, component("TP3")]))
            assert response.status_code == 422
            [detail] = response.json()["error"]["details"]
            assert detail == {"field": "components[1].content_base64", "message": "the file is larger than 2000 bytes"}


async def test_a_body_that_is_not_an_object_is_422(gw: Gateway) -> None:
    response = await gw.client.post("/api/v1/dossiers", json=[submission()], headers=PORTAL)
    assert response.status_code == 422
    assert "expected a JSON object" in response.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------------
# File names and content types


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("don.pdf", "don.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\a\\Đơn đề nghị.pdf", "Đơn đề nghị.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),
        ("a\x00b\nc.pdf", "abc.pdf"),
        ("..", "TP1.pdf"),
        ("/", "TP1.pdf"),
        ("", "TP1.pdf"),
        (None, "TP1.pdf"),
        (".htaccess", "htaccess"),
        ('a<b>:"c"|?*.pdf', "a_b___c____.pdf"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_file_names_are_sanitised(raw: str | None, expected: str) -> None:
    assert sanitise_filename(raw, fallback_stem="TP1", content_type="application/pdf") == expected


def _zip(names: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n%...", "application/pdf"),
        (b'<?xml version="1.0"?><ToKhai/>', "application/xml"),
        (b"\xef\xbb\xbf<ToKhai/>", "application/xml"),
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (
            _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"}),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (
            _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}),
            "application/vnd.oasis.opendocument.text",
        ),
        (_zip({"a.txt": b"hello"}), "application/zip"),
        (b"PK\x03\x04 broken archive", "application/zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 32, "application/x-ole-storage"),
        (b"plain text", "application/octet-stream"),
    ],
)
def test_content_types_are_sniffed_from_the_bytes(data: bytes, kind: str) -> None:
    assert sniff_content_type(data) == kind


@pytest.mark.parametrize(
    ("declared", "sniffed", "error", "stored"),
    [
        (None, "application/pdf", False, "application/pdf"),
        ("application/pdf; charset=binary", "application/pdf", False, "application/pdf"),
        ("text/xml", "application/xml", False, "application/xml"),
        ("application/vnd.dvc.tokhai+xml", "application/xml", False, "application/xml"),
        ("image/jpg", "image/jpeg", False, "image/jpeg"),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/zip",
            False,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("application/msword", "application/x-ole-storage", False, "application/msword"),
        ("text/plain", "application/octet-stream", False, "application/octet-stream"),
        ("application/pdf", "image/png", True, None),
        ("application/pdf", "application/octet-stream", True, None),
        ("image/png", "application/xml", True, None),
    ],
)
def test_declared_types_must_agree_with_the_content(declared, sniffed, error, stored) -> None:
    problem, kind = reconcile_content_type(declared, sniffed)
    assert (problem is not None) is error
    if not error:
        assert kind == stored


async def test_names_and_types_are_never_taken_on_trust(gw: Gateway) -> None:
    body = submission(
        components=[
            component("TP1", filename="../../../var/lib/gateway.db"),
            component("TP2", data=PNG, filename="scan.png", content_type=None),
            component("TP3", filename=None),
        ]
    )
    dossier = await gw.submitted(body)
    tp1, tp2, tp3 = dossier["components"]
    assert tp1["filename"] == "gateway.db" and tp1["content_type"] == "application/pdf"
    assert tp2["content_type"] == "image/png"
    assert tp3["filename"] == "TP3.pdf"


async def test_hostile_xml_is_stored_and_reported_never_a_500(gw: Gateway) -> None:
    body = submission(
        components=[
            component("TP1", data=BOMB, filename="tokhai.xml", content_type="application/xml"),
            component("TP2", data=b"<<<not xml at all", filename="x.xml", content_type="text/xml"),
            component("TP3", data=b"\x30\x82\x01\x00 garbage that looks like DER", filename="x.p7m", content_type=None),
        ]
    )
    dossier = await gw.submitted(body)
    tp1, tp2, tp3 = dossier["components"]
    for item in (tp1, tp2):
        assert item["verification"]["verdict"] == "invalid"
        assert item["verification"]["signatures"][0]["sub_indication"] == "FORMAT_FAILURE"
        assert item["originals_check_required"] is True
    assert tp3["verification"]["originals_check_required"] is True
    with gw.db.unit_of_work() as session:
        assert session.get(Blob, tp1["sha256"]).content == BOMB


# ---------------------------------------------------------------------------------------------------------------------
# Signatures


async def test_a_validly_signed_component_needs_no_originals_check(signed_gw: Gateway, pki: Any) -> None:
    signed = await asyncio.to_thread(sign_pdf, pdf("Don de nghi da ky"), pki.good)
    dossier = await signed_gw.submitted(
        submission(components=[component("TP1", data=signed), component("TP2"), component("TP3")])
    )
    tp1, tp2, _ = dossier["components"]
    assert tp1["verification"]["verdict"] == "valid", tp1["verification"]
    assert tp1["verification"]["format"] == "pades"
    assert tp1["originals_check_required"] is False
    assert tp2["verification"]["verdict"] == "unsigned" and tp2["originals_check_required"] is True
    assert dossier["originals_check_required"] is True  # TP2 and TP3 are unsigned
    assert dossier["history"][0]["note"] is None  # TP1 must be signed, and it is


async def test_a_dossier_signed_throughout_is_exempt_from_the_originals_check(signed_gw: Gateway, pki: Any) -> None:
    scan = PNG + b"scan of the land use certificate"
    tp1 = await asyncio.to_thread(sign_pdf, pdf("TP1 signed"), pki.good)
    tp2_signature = await asyncio.to_thread(sign_cms, scan, pki.good)
    tp3 = await asyncio.to_thread(sign_pdf, pdf("TP3 signed"), pki.good_ec)
    components = [
        component("TP1", data=tp1),
        component(
            "TP2",
            data=scan,
            filename="so-do.png",
            content_type="image/png",
            detached_signature_base64=b64(tp2_signature),
        ),
        component("TP3", data=tp3),
    ]
    dossier = await signed_gw.submitted(submission(components=components))
    assert [c["verification"]["verdict"] for c in dossier["components"]] == ["valid"] * 3
    assert dossier["components"][1]["verification"]["format"] == "cades"
    assert dossier["originals_check_required"] is False


async def test_a_must_be_signed_component_with_a_bad_signature_is_kept_and_flagged(
    signed_gw: Gateway, pki: Any
) -> None:
    revoked = await asyncio.to_thread(sign_pdf, pdf("TP1 revoked"), pki.revoked)
    dossier = await signed_gw.submitted(
        submission(components=[component("TP1", data=revoked), component("TP2"), component("TP3")])
    )
    tp1 = dossier["components"][0]
    assert tp1["verification"]["verdict"] == "revoked" and tp1["originals_check_required"] is True
    assert (
        dossier["history"][0]["note"] == "Originals check required: TP1 must be digitally signed (signature: revoked)"
    )


async def test_unsigned_xml_form_is_unsigned(signed_gw: Gateway) -> None:
    form = make_form()
    dossier = await signed_gw.submitted(
        submission(
            components=[
                component("TP1", data=form, filename="tokhai.xml", content_type="application/xml"),
                component("TP2"),
                component("TP3"),
            ]
        )
    )
    assert dossier["components"][0]["verification"]["verdict"] == "unsigned"


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("SGVsbG8=", b"Hello"),
        ("SGVs\nbG8=\r\n", b"Hello"),  # line breaks, as MIME encoders write them
        ("SGVsbG8", None),  # padding missing
        ("SGVsbG8==", None),  # padding in excess
        ("SGVsbG8=SGVs", None),  # data after the padding
        ("=SGVsbG8", None),
        ("SGVs-G8=", None),  # the URL-safe alphabet
        ("SGVsbG8=é", None),
    ],
)
def test_file_contents_are_strict_base64(text: str, decoded: bytes | None) -> None:
    from gateway.services.files import _decode_base64

    errors: list[dict[str, str]] = []
    assert _decode_base64(text, field="f", max_bytes=100, errors=errors, what="file") == decoded
    assert (errors == []) == (decoded is not None)
