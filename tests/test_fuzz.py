"""The parsers that read what outsiders send, under a fuzzer: signed documents (the signature verifier), SOAP callbacks,
HAR cassettes, XML (the hardened parser) and the payment platform's notifications.

Each property is "any input gives an answer or the parser's own refusal, never another exception", plus what the
answer must say (a document from nowhere is never ``valid``). Inputs are random bytes, grammar-shaped fragments and
mutations of real samples (the bundled signed documents, a valid SOAP request, a HAR file, signed notifications).

CI runs a fixed budget with derandomized generation (the same inputs every run). A longer, random run:
``DVC_GATEWAY_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py`` (new inputs each run; a failure
prints the input that caused it).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.payment import InvalidNotification, InvalidSignature, VNPayProvider, sign
from adapters.xmlguard import UnsafeXMLError, XMLRefusedError, parse_xml
from gateway.recording.har import Exchange, HarError, dumps_har, loads_har
from gateway.soap_callback import NAMESPACE, SOAP11, SOAP12, CallbackFault, event_fields, parse_request
from signing import TrustSettings, TrustStore, Verdict, verify_document_sync

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT / "examples" / "documents"
TRUST = ROOT / "examples" / "trust"

_LONG_RUN = os.environ.get("DVC_GATEWAY_FUZZ_EXAMPLES")


def budget(ci_examples: int) -> Callable[[Any], Any]:
    """The settings of one property: ``ci_examples`` derandomized, or the long run's number, random."""
    return settings(
        max_examples=int(_LONG_RUN) if _LONG_RUN else ci_examples,
        derandomize=not _LONG_RUN,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@st.composite
def mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """One of ``samples`` with a few random edits: byte flips, deletions, insertions, truncation, a splice.

    Positions are drawn uniformly (from a random generator Hypothesis seeds), not biased to the start of the file.
    """
    rnd = draw(st.randoms(use_true_random=False))
    data = bytearray(rnd.choice(samples))
    for _ in range(rnd.randint(1, 4)):
        edit = rnd.choice(["flip", "flip", "delete", "insert", "truncate", "splice"])
        at = rnd.randrange(len(data)) if data else 0
        if edit == "flip" and data:
            data[at] ^= 1 << rnd.randrange(8)
        elif edit == "delete":
            del data[at : at + rnd.randint(1, 64)]
        elif edit == "insert":
            data[at:at] = rnd.randbytes(rnd.randint(1, 32))
        elif edit == "truncate":
            del data[at:]
        else:
            other = rnd.choice(samples)
            data[at:] = other[rnd.randrange(len(other)) :]
    return bytes(data)


def fragments(tokens: list[str]) -> st.SearchStrategy[bytes]:
    """A concatenation of grammar ``tokens`` and random text, encoded (UTF-8 mostly, UTF-16 sometimes)."""
    piece = st.one_of(st.sampled_from(tokens), st.text(max_size=8))
    text = st.lists(piece, max_size=24).map("".join)
    return st.tuples(text, st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16"])).map(
        lambda pair: pair[0].encode(pair[1], "surrogatepass")
    )


# -- signatures --------------------------------------------------------------------------------------------------------

_SAMPLES = sorted(path.read_bytes() for path in DOCUMENTS.iterdir() if path.is_file())
_PREFIXES = [b"%PDF-1.7\n", b"<?xml version='1.0'?>", b"\x30\x82\x01\x00", b"\x30\x80", b"\xff\xd8\xff", b""]
_EMPTY_STORE = TrustStore.load(TrustSettings())
_REAL_STORE = TrustStore.load(
    TrustSettings(
        trust_anchors=[TRUST / "root.pem"],
        intermediates=[TRUST / "ca.pem"],
        crls=sorted((TRUST / "crls").iterdir()),
    )
)
_documents = st.one_of(
    mutated(_SAMPLES),
    st.tuples(st.sampled_from(_PREFIXES), st.binary(max_size=512)).map(b"".join),
)


def _check_report(data: bytes, store: TrustStore, detached: bytes | None = None) -> Verdict:
    report = verify_document_sync(data, store, filename="tep.bin", detached_signature=detached)
    document = report.to_json()  # the report always serializes, whatever it says
    json.dumps(document)
    assert document["verdict"] in {verdict.value for verdict in Verdict}
    return report.verdict


@budget(25)
@given(data=_documents, detached=st.one_of(st.none(), mutated(_SAMPLES)))
def test_a_document_from_nowhere_gets_a_report_never_valid(data: bytes, detached: bytes | None) -> None:
    """Without trust anchors nothing is valid: whatever the bytes, a report (never an exception), never ``valid``."""
    assert _check_report(data, _EMPTY_STORE, detached) is not Verdict.VALID


@budget(25)
@given(data=mutated(_SAMPLES))
def test_a_damaged_signed_document_gets_a_report(data: bytes) -> None:
    """With the samples' real trust anchors, a damaged sample still gets a well-formed report."""
    _check_report(data, _REAL_STORE)


# -- the SOAP callback -------------------------------------------------------------------------------------------------

_VALID_REQUEST = (
    f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP11}"><soap:Header>'
    '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
    "<wsse:UsernameToken><wsse:Username>sxd</wsse:Username><wsse:Password>bi-mat</wsse:Password>"
    "</wsse:UsernameToken></wsse:Security></soap:Header><soap:Body>"
    f'<cb:CapNhatTrangThaiHoSo xmlns:cb="{NAMESPACE}"><cb:MaCoQuan>000.00.23.H38</cb:MaCoQuan>'
    "<cb:MaHoSo>000.00.23.H38-261123-0001</cb:MaHoSo><cb:TrangThai>4</cb:TrangThai>"
    "<cb:ThoiDiem>2026-11-23T09:00:00+07:00</cb:ThoiDiem><cb:GhiChu>Đã tiếp nhận</cb:GhiChu>"
    "</cb:CapNhatTrangThaiHoSo></soap:Body></soap:Envelope>"
).encode()
_SOAP_TOKENS = [
    f'<soap:Envelope xmlns:soap="{SOAP11}">',
    f'<soap:Envelope xmlns:soap="{SOAP12}">',
    "</soap:Envelope>",
    "<soap:Header>",
    "</soap:Header>",
    "<soap:Body>",
    "</soap:Body>",
    f'<cb:CapNhatTrangThaiHoSo xmlns:cb="{NAMESPACE}">',
    "</cb:CapNhatTrangThaiHoSo>",
    "<cb:MaHoSo>",
    "</cb:MaHoSo>",
    "<cb:TrangThai>",
    "</cb:TrangThai>",
    "<cb:KetQua><cb:TepKetQua><cb:NoiDung>",
    "</cb:NoiDung></cb:TepKetQua></cb:KetQua>",
    '<x soap:mustUnderstand="1">',
    "<!DOCTYPE x [<!ENTITY a 'b'>]>",
    "&a;",
    "&#0;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?pi x?>",
    '<?xml version="1.0" encoding="utf-16"?>',
]


@budget(150)
@given(
    body=st.one_of(mutated([_VALID_REQUEST]), fragments(_SOAP_TOKENS), st.binary(max_size=256)),
    content_type=st.sampled_from(
        ["text/xml; charset=utf-8", "application/soap+xml", "text/xml; charset=utf-16", "application/json", None]
    ),
)
def test_a_soap_callback_is_read_or_refused_with_a_fault(body: bytes, content_type: str | None) -> None:
    try:
        request = parse_request(body, content_type)
    except CallbackFault as fault:
        assert 400 <= fault.http_status < 600 and fault.message
        return
    event = event_fields(request.values, statuses={"DA_NHAN": "received"})
    assert isinstance(event["dossier_code"], str) and isinstance(event["status"], str)


# -- HAR cassettes -----------------------------------------------------------------------------------------------------

_VALID_HAR = dumps_har(
    [
        Exchange(
            method="POST",
            url="https://motcua.example.vn/api/hoso?x=1",
            request_headers=(("Content-Type", "application/x-www-form-urlencoded"), ("X-Ma", "1")),
            request_body=b"ma=1&ten=H%E1%BB%93+s%C6%A1",
            status=201,
            status_text="Created",
            response_headers=(("Content-Type", "application/octet-stream"),),
            response_body=b"\x00\x01binary",
            started="2026-11-23T02:00:00.000Z",
        )
    ]
)
_text = st.one_of(st.text(max_size=8), st.sampled_from(["\ud800", "a\udfffb", "base64", "x-unknown", ":path"]))
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)
#: Values a careless reader trips on: surrogates (not encodable), numbers where lists go, lists of odd objects.
_HOSTILE = [
    "\ud800",
    5,
    -1,
    1e308,
    float("nan"),
    True,
    None,
    "",
    [],
    {},
    [{"name": "\udc00", "value": "\ud800"}],
    [{"name": 1}],
    [5],
    "=&%",
]
_HAR_KEYS = ["log", "entries", "request", "response", "method", "url", "status", "headers", "name", "value"]
_HAR_KEYS += ["postData", "text", "params", "mimeType", "content", "encoding", "time", "_error", "_upstream"]


def _places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a parsed JSON document, depth first."""
    found: list[tuple[Any, Any]] = []
    keys = sorted(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
    for key in keys:
        found.append((node, key))
        found.extend(_places(node[key]))
    return found


@st.composite
def har_documents(draw: st.DrawFn) -> Any:
    """A HAR document with one to three values (anywhere) replaced by random JSON values, or keys added."""
    document = json.loads(_VALID_HAR)
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(_places(document)))
        if isinstance(container, dict) and draw(st.booleans()):
            key = draw(st.sampled_from(_HAR_KEYS))
        container[key] = copy.deepcopy(draw(st.one_of(st.sampled_from(_HOSTILE), _json_values)))
    return document


def _entry(request: dict[str, Any]) -> dict[str, Any]:
    return {"request": {"method": "POST", "url": "http://x.example/", **request}, "response": {"status": 200}}


@budget(150)
@given(
    data=st.one_of(
        har_documents(),
        har_documents().map(lambda doc: json.dumps(doc).encode()),
        mutated([_VALID_HAR]),
        st.integers(1, 5000).map(lambda depth: b"[" * depth),
        st.integers(1, 5000).map(lambda depth: b'{"log": ' * depth),
        st.sampled_from([b'{"log": {"entries": [{"request": {"method": "GET", "url": "\\ud800"}}]}}']),
    )
)
@example(b"[" * 100_000)  # found by the fuzzer: JSON nested too deeply (was RecursionError)
@example({"log": {"entries": [_entry({"postData": {"params": 5}})]}})  # was TypeError
@example(json.dumps({"log": {"entries": [_entry({"postData": {"text": "\ud800"}})]}}))  # was UnicodeEncodeError
@example({"log": {"entries": [_entry({"headers": [{"name": "X", "value": "\udc00"}]})]}})
def test_a_har_file_is_loaded_or_refused_with_a_har_error(data: Any) -> None:
    try:
        exchanges = loads_har(data)
    except HarError as exc:
        assert str(exc)
        return
    for exchange in exchanges:
        assert isinstance(exchange.request_body, bytes | None) and isinstance(exchange.response_body, bytes)
        dumps_har([exchange])  # what was loaded can be written back


# -- the hardened XML parser -------------------------------------------------------------------------------------------

_XML_TOKENS = [
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="utf-16"?>',
    "<!DOCTYPE r>",
    '<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">',
    "<!ENTITY e SYSTEM 'file:///etc/passwd'>",
    "<!ENTITY",
    "&e;",
    "&amp;",
    "&#x10FFFF;",
    "<r>",
    "</r>",
    '<a xmlns="urn:x" b="c">',
    "</a>",
    "<![CDATA[x]]>",
    "<!-- c -->",
    "<?pi x?>",
    "\x00",
    "\ufeff",
]


@budget(200)
@given(data=st.one_of(fragments(_XML_TOKENS), st.binary(max_size=256), mutated([_SAMPLES[-1], _VALID_REQUEST])))
def test_xml_is_parsed_or_refused_and_never_carries_a_dtd(data: bytes) -> None:
    try:
        root = parse_xml(data)
    except UnsafeXMLError:
        return
    except XMLRefusedError as exc:
        assert str(exc)
        return
    tree = root.getroottree()
    assert tree.docinfo.doctype == "" and next(root.iter(etree.Entity), None) is None
    assert b"<!DOCTYPE" not in data.replace(b"\x00", b"")


# -- payment notifications ---------------------------------------------------------------------------------------------

_SECRET = "ZXCVBNMASDFGHJKLQWERTYUIOP123456"
_MERCHANT = "DVCH38TM"
_PROVIDER = VNPayProvider(merchant_code=_MERCHANT, secret=_SECRET, payment_url="https://pay.example.vn/vpcpay.html")
_FIELDS = ["vnp_TxnRef", "vnp_Amount", "vnp_ResponseCode", "vnp_TransactionStatus", "vnp_PayDate", "vnp_BankCode"]
_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "00", "15000000", "-1", "1e3", "1_000", "٣٣", "20261123083000", "99999999999999", "NaN"]),
)


@budget(150)
@given(
    params=st.dictionaries(st.sampled_from([*_FIELDS, "vnp_TmnCode", "vnp_Other"]), _VALUES, max_size=8),
    signed=st.booleans(),
)
def test_a_notification_is_read_or_refused(params: dict[str, str], signed: bool) -> None:
    """Signed with the merchant's secret (the fields' parsing is reached) or not: a notification or a refusal."""
    params = {"vnp_TmnCode": _MERCHANT, **params} if signed else params
    if signed:
        params["vnp_SecureHash"] = sign(params, _SECRET)
    try:
        notification = _PROVIDER.verify_notification(params)
    except InvalidSignature:
        assert not signed or params["vnp_TmnCode"] != _MERCHANT
        return
    except InvalidNotification as exc:
        assert signed and str(exc)
        return
    assert signed and notification.amount_vnd >= 0 and notification.reference == params["vnp_TxnRef"]
