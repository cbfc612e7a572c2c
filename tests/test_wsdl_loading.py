"""Loading real-world service descriptions: the well-known schemas from the shipped copies, the lenient second
attempt and its repairs (each alone, each a warning), one-line refusals for whatever zeep or lxml raise, the size,
count and time limits, and the attacks (XXE, billion laughs, external DTD, metadata addresses, ``file:``, cycles).

Descriptions are served on 127.0.0.1 by a static server and loaded through the gateway's client factory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep

from adapters.http import ClientFactory, ClientSettings
from adapters.netguard import AddressPolicy
from adapters.onestop import wsdl as shipped
from adapters.onestop.soap import FetchedWsdl, WsdlError, WsdlLimits, build_description
from adapters.onestop.soap.documents import _Prepared, _zeep
from adapters.onestop.soap.explain import TOO_DEEP, explain
from adapters.onestop.wsdlcheck import check_wsdl
from adapters.onestop.wsdlinspect import Inspection, inspect_wsdl
from tests.servers import ServerThread
from tests.soap_support import static_app

DATA = Path(__file__).parent / "data" / "wsdl"
XML = "text/xml"
WSDL = shipped.read(shipped.REFERENCE_WSDL)
HOSO = shipped.read(shipped.REFERENCE_XSD)
BASE = "https://agency.invalid/ws/"


def fetched(wsdl: bytes, xsd: bytes = HOSO, **more: bytes) -> FetchedWsdl:
    documents = {BASE + "TiepNhanHoSo.wsdl": wsdl, BASE + "hoso.xsd": xsd}
    documents.update({BASE + name: content for name, content in more.items()})
    return FetchedWsdl(url=BASE + "TiepNhanHoSo.wsdl", documents=documents)


def operations(document: zeep.wsdl.Document) -> set[str]:
    return {name for binding in document.bindings.values() for name in binding._operations}


REFERENCE_OPERATIONS = {"TiepNhanHoSo", "LayTrangThaiHoSo", "BoSungHoSo", "RutHoSo"}


def test_the_reference_loads_strictly_without_warnings() -> None:
    built = build_description(fetched(WSDL))
    assert built.warnings == () and operations(built.document) == REFERENCE_OPERATIONS


def test_rpc_encoded_loads_with_soap_encoding_from_the_shipped_copy() -> None:
    content = (DATA / "axis-rpc-encoded.wsdl").read_bytes()
    url = "https://agency.invalid/axis/MotCuaService?wsdl"
    built = build_description(FetchedWsdl(url=url, documents={url: content}))
    assert built.warnings == ()
    (binding,) = built.document.bindings.values()
    assert set(binding._operations) == {"nopHoSo", "layTinhTrang", "boSungTaiLieu", "huyHoSo"}
    assert built.document.types.get_type("{http://schemas.xmlsoap.org/soap/encoding/}Array") is not None


# Each defect alone, the repair it needs and the one warning that says so.
REPAIRS = [
    (
        "import namespace",
        fetched(WSDL.replace(b'namespace="urn:dvc:motcua:1.0" schemaLocation', b'namespace="urn:sai" schemaLocation')),
        f"{BASE}TiepNhanHoSo.wsdl: xsd:import of namespace urn:sai takes urn:dvc:motcua:1.0, the imported schema's "
        "target namespace",
    ),
    (
        "undeclared xs prefix",
        fetched(WSDL, HOSO.replace(b'xmlns:xs="http://www.w3.org/2001/XMLSchema"', b"")),
        f"{BASE}hoso.xsd: prefix xs: used without declaration, bound to http://www.w3.org/2001/XMLSchema",
    ),
    (
        "undeclared soap prefix",
        fetched(WSDL.replace(b'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"', b"")),
        f"{BASE}TiepNhanHoSo.wsdl: prefix soap: used without declaration, bound to "
        "http://schemas.xmlsoap.org/wsdl/soap/",
    ),
    (
        "1999 XML Schema",
        fetched(WSDL, HOSO.replace(b"http://www.w3.org/2001/XMLSchema", b"http://www.w3.org/1999/XMLSchema")),
        f"{BASE}hoso.xsd: the 1999/2000 XML Schema namespace read as XML Schema 2001",
    ),
    (
        "unresolved type",
        fetched(WSDL, HOSO.replace(b'type="mc:MaBam"', b'type="mc:KhongCo"')),
        "KhongCo (urn:dvc:motcua:1.0) is not defined: read as anyType",
    ),
]


@pytest.mark.parametrize(("defect", "description", "warning"), REPAIRS, ids=[r[0] for r in REPAIRS])
def test_each_repair_alone(defect: str, description: FetchedWsdl, warning: str) -> None:
    built = build_description(description)
    assert built.warnings == (warning,)
    assert operations(built.document) == REFERENCE_OPERATIONS


def test_the_strict_attempt_fails_on_each_defect() -> None:
    """Each defect above is one that zeep alone refuses (the repairs are needed, not decoration)."""
    for _defect, description, _warning in REPAIRS:
        with pytest.raises(Exception):  # noqa: B017 - zeep and lxml raise many kinds
            _zeep(_Prepared(description, lenient=False))


def test_an_axis_header_description_is_refused_in_one_line_not_an_assertion_error() -> None:
    content = (DATA / "axis-header.wsdl").read_bytes()
    url = "https://agency.invalid/axis/header.wsdl"
    with pytest.raises(AssertionError):  # what raw zeep does with it, offline
        zeep.wsdl.Document(str(DATA / "axis-header.wsdl"), zeep.Transport())
    with pytest.raises(WsdlError) as refused:
        build_description(FetchedWsdl(url=url, documents={url: content}))
    assert refused.value.message == (
        "the service description is invalid: it has a construct the WSDL reader cannot interpret (a SOAP header, "
        "message part or schema element that is not where WSDL 1.1 expects it)"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            (b'type="tns:TiepNhanHoSoPortType"', b'type="tns:Khong"'),
            "the service description is invalid: it refers to port type 'Khong', which it does not define",
        ),
    ],
    ids=["undefined port type"],
)
def test_refusals_say_what_is_wrong_in_plain_words(change: tuple[bytes, bytes], expected: str) -> None:
    wsdl, xsd = WSDL.replace(*change), HOSO.replace(*change).replace(b"xmlns:mc=", b'xmlns:khac="urn:khac" xmlns:mc=')
    with pytest.raises(WsdlError) as refused:
        build_description(fetched(wsdl, xsd))
    assert refused.value.message == expected
    assert "\n" not in refused.value.message and "0x" not in refused.value.message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            zeep.exceptions.NamespaceError(
                "Unable to resolve type {urn:khac}MaBam. No schema available for the namespace 'urn:khac'."
            ),
            "the type MaBam (namespace urn:khac) is used but no schema of the description has that namespace "
            "(a missing xsd:import?)",
        ),
        (
            zeep.exceptions.LookupError("Unable to resolve element {urn:a}HoSo in x.xsd", location="https://a/x.xsd"),
            "https://a/x.xsd: the element HoSo (namespace urn:a) is used but not defined by any schema of the "
            "description",
        ),
        (
            KeyError("{urn:a}Khong"),
            "it refers to 'Khong', which it does not define (a message, part, port type, "
            "binding or operation of that name is missing or misspelt)",
        ),
        (
            IndexError("list index out of range"),
            "an element it needs is missing (a part, an operation's input or output, or a schema's content)",
        ),
        (
            ValueError("No visitor defined for '{urn:x}y'"),
            "it has an element {urn:x}y where XML Schema does not allow one",
        ),
        (
            zeep.exceptions.XMLParseError("No namespace defined for 'x' ('x:y')"),
            "the prefix x: is used without being declared",
        ),
        (
            zeep.exceptions.DTDForbidden("x", "y", "z"),
            "a document carries a DTD or entities (refused: no DTDs or entities in service descriptions)",
        ),
        (RecursionError("maximum recursion depth exceeded"), TOO_DEEP),
    ],
    ids=[
        "unknown namespace",
        "undefined element",
        "KeyError",
        "IndexError",
        "no visitor",
        "prefix",
        "DTD",
        "recursion",
    ],
)
def test_what_zeep_raises_is_explained(error: Exception, expected: str) -> None:
    assert explain(error, str) == expected


# --- fetched over HTTP: limits and attacks ----------------------------------------------------------------------


def wsdl_importing(location: str, *, namespace: str = "urn:dvc:motcua:1.0") -> bytes:
    return WSDL.replace(
        b'namespace="urn:dvc:motcua:1.0" schemaLocation="hoso.xsd"',
        f'namespace="{namespace}" schemaLocation="{location}"'.encode(),
    )


BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]>\n<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
    b"<xs:annotation><xs:documentation>&lol3;</xs:documentation></xs:annotation></xs:schema>"
)
XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:annotation><xs:documentation>&xxe;'
    b"</xs:documentation></xs:annotation></xs:schema>"
)
EXTERNAL_DTD = (
    b'<?xml version="1.0"?>\n<!DOCTYPE schema SYSTEM "http://127.0.0.1:9/evil.dtd">\n'
    b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:dvc:motcua:1.0"/>'
)
CYCLE_A = wsdl_importing("b.xsd", namespace="urn:b")
CYCLE_B = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:b">
  <xs:import namespace="urn:c" schemaLocation="c.xsd"/></xs:schema>"""
CYCLE_C = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:c">
  <xs:import namespace="urn:b" schemaLocation="b.xsd"/>
  <xs:import namespace="urn:dvc:motcua:1.0" schemaLocation="hoso.xsd"/></xs:schema>"""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    documents = {
        "/ref/TiepNhanHoSo.wsdl": (200, XML, WSDL),
        "/ref/hoso.xsd": (200, XML, HOSO),
        "/big/TiepNhanHoSo.wsdl": (
            200,
            XML,
            WSDL.replace(b"<wsdl:types>", b"<!--" + b"x" * 4_300_000 + b"--><wsdl:types>"),
        ),
        "/big/hoso.xsd": (200, XML, HOSO),
        "/bomb.wsdl": (200, XML, wsdl_importing("bomb.xsd")),
        "/bomb.xsd": (200, XML, BOMB),
        "/xxe.wsdl": (200, XML, wsdl_importing("xxe.xsd")),
        "/xxe.xsd": (200, XML, XXE),
        "/dtd.wsdl": (200, XML, wsdl_importing("dtd.xsd")),
        "/dtd.xsd": (200, XML, EXTERNAL_DTD),
        "/metadata.wsdl": (200, XML, wsdl_importing("http://169.254.169.254/latest/meta-data/hoso.xsd")),
        "/file.wsdl": (200, XML, wsdl_importing("file:///etc/passwd")),
        "/cycle/TiepNhanHoSo.wsdl": (200, XML, CYCLE_A),
        "/cycle/b.xsd": (200, XML, CYCLE_B),
        "/cycle/c.xsd": (200, XML, CYCLE_C),
        "/cycle/hoso.xsd": (200, XML, HOSO),
        **{
            f"/dotnet/{path.relative_to(DATA / 'dotnet')}": (200, XML, path.read_bytes())
            for path in (DATA / "dotnet").rglob("*.*")
        },
        "/encoding.wsdl": (
            200,
            XML,
            wsdl_importing(
                "http://schemas.xmlsoap.org/soap/encoding/", namespace="http://schemas.xmlsoap.org/soap/encoding/"
            ),
        ),
    }
    with ServerThread(static_app(documents)) as thread:
        thread.app.state.documents = documents
        yield thread


async def inspect(url: str, limits: WsdlLimits | None = None) -> Inspection:
    settings = ClientSettings(base_url=url, address_policy=AddressPolicy(allow_private=True), timeout_seconds=5)
    async with ClientFactory().client("wsdl-test", settings) as http:
        found = await inspect_wsdl(url, http, limits=limits)
    assert found.loaded or (found.error is not None and "\n" not in found.error)
    return found


async def test_a_large_single_document_loads_within_the_default_limits(server: ServerThread) -> None:
    found = await inspect(f"{server.base_url}/big/TiepNhanHoSo.wsdl")
    assert found.loaded, found.error
    assert found.soap_versions == ("1.1", "1.2")


async def test_size_count_and_time_limits(server: ServerThread) -> None:
    url = f"{server.base_url}/big/TiepNhanHoSo.wsdl"
    one = await inspect(url, WsdlLimits(max_document_bytes=1_000_000))
    assert one.error is not None and one.error.startswith(f"{url} is too large (")
    size = len(server.app.state.documents["/big/TiepNhanHoSo.wsdl"][2])
    total = await inspect(url, WsdlLimits(max_total_bytes=size + 1000))
    assert total.error == (
        f"the service description is too large: its documents up to {server.base_url}/big/hoso.xsd make "
        f"{size + len(HOSO)} bytes, the limit is {size + 1000}"
    )
    count = await inspect(f"{server.base_url}/cycle/TiepNhanHoSo.wsdl", WsdlLimits(max_documents=2))
    assert count.error == "the service description has more than 2 documents"
    slow = await inspect(url, WsdlLimits(load_timeout_seconds=0.001))
    assert slow.error == "loading took longer than 0.001 seconds (the limit)"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/bomb.wsdl", "{base}/bomb.xsd carries a DTD (refused: no DTDs or entities in service descriptions)"),
        ("/xxe.wsdl", "{base}/xxe.xsd carries a DTD (refused: no DTDs or entities in service descriptions)"),
        ("/dtd.wsdl", "{base}/dtd.xsd carries a DTD (refused: no DTDs or entities in service descriptions)"),
        ("/file.wsdl", "{base}/file.wsdl refers to file:///etc/passwd: only http(s) references are followed"),
    ],
    ids=["billion laughs", "XXE", "external DTD", "file reference"],
)
async def test_attacks_are_refused_in_one_line(server: ServerThread, path: str, expected: str) -> None:
    found = await inspect(f"{server.base_url}{path}")
    assert not found.loaded
    assert found.error == expected.format(base=server.base_url)


async def test_an_import_to_the_metadata_address_is_never_fetched(server: ServerThread) -> None:
    found = await inspect(f"{server.base_url}/metadata.wsdl")
    assert not found.loaded and found.error is not None
    assert found.error == "Refusing to connect to 169.254.169.254: link-local or cloud metadata address"


async def test_import_cycles_load_once_each(server: ServerThread) -> None:
    found = await inspect(f"{server.base_url}/cycle/TiepNhanHoSo.wsdl")
    assert found.loaded, found.error
    assert len(found.documents) == 4


async def test_a_well_known_schema_is_never_fetched(server: ServerThread) -> None:
    """An import of SOAP encoding with its public location is served from the shipped copy."""
    found = await inspect(f"{server.base_url}/encoding.wsdl")
    assert found.loaded, found.error
    assert found.documents == (f"{server.base_url}/encoding.wsdl",)


async def test_what_zeep_leaves_out_is_a_warning_of_the_description(server: ServerThread) -> None:
    """Messages whose parts name undefined elements, and the operations using them, are left out by zeep, which says
    so with Python warnings: they are the description's warnings, and none reaches the process's own."""
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        found = await inspect(f"{server.base_url}/encoding.wsdl")
    assert found.loaded, found.error
    assert [str(item.message) for item in escaped] == []
    assert (
        "The wsdl:message for '{urn:dvc:motcua:1.0:wsdl}TiepNhanHoSoRequest' contains an invalid part ('parameters'): "
        "invalid xsd type or elements; left out"
    ) in found.warnings
    assert (
        "The wsdl:operation 'TiepNhanHoSo' was not found in the wsdl:portType "
        "'{urn:dvc:motcua:1.0:wsdl}TiepNhanHoSoPortType'; left out"
    ) in found.warnings
    assert len(found.warnings) == len(set(found.warnings)) == 13  # 9 messages, 4 operations: each once
    assert all(port.operations == () for service in found.services for port in service.ports)


def test_warnings_from_elsewhere_are_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """While zeep parses, a warning that is not zeep's (another thread's, say) still reaches the process's filters."""
    description = fetched(WSDL)
    real = zeep.wsdl.Document

    def warning_document(*args: object, **kwargs: object) -> object:
        warnings.warn_explicit("part left out", UserWarning, "/site-packages/zeep/wsdl/wsdl.py", 353)
        warnings.warn_explicit("part left out", UserWarning, "/site-packages/zeep/wsdl/wsdl.py", 353)
        warnings.warn("something else entirely", DeprecationWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(zeep.wsdl, "Document", warning_document)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        built = _zeep(_Prepared(description, lenient=False))
    assert built.warnings == ("part left out; left out",)
    assert [(item.category, str(item.message)) for item in escaped] == [(DeprecationWarning, "something else entirely")]


def test_parses_in_two_threads_take_turns_and_leave_the_warning_settings_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``catch_warnings`` is not safe across threads: two overlapping parses would put back each other's settings
    (leaving the process's warnings going to a dead list). Each parse waits for the other."""
    import threading
    import time

    real = zeep.wsdl.Document
    inside, peak, lock = [0], [0], threading.Lock()

    def slow_document(*args: object, **kwargs: object) -> object:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.3)  # long enough for the other thread to arrive
        warnings.warn_explicit("part left out", UserWarning, "/site-packages/zeep/wsdl/wsdl.py", 353)
        with lock:
            inside[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(zeep.wsdl, "Document", slow_document)
    before = (warnings.showwarning, list(warnings.filters))
    results: list[tuple[str, ...]] = []
    threads = [
        threading.Thread(target=lambda: results.append(_zeep(_Prepared(fetched(WSDL), lenient=False)).warnings))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [("part left out; left out",)] * 2
    assert peak[0] == 1
    assert (warnings.showwarning, list(warnings.filters)) == before


async def test_bindings_in_an_imported_document_are_reported(server: ServerThread) -> None:
    url = f"{server.base_url}/dotnet/service.wsdl"
    settings = ClientSettings(base_url=url, address_policy=AddressPolicy(allow_private=True), timeout_seconds=5)
    result = await check_wsdl(url, factory=ClientFactory(), settings=settings)
    assert result.soap_versions == ("1.1", "1.2")
    assert {(b.name, b.soap_version, b.port) for b in result.bindings} == {
        ("BasicHttpBinding_IHoSoService", "1.1", "BasicHttpBinding_IHoSoService"),
        ("WSHttpBinding_IHoSoService", "1.2", "WSHttpBinding_IHoSoService"),
    }
    assert result.port == "BasicHttpBinding_IHoSoService"
    assert result.message.startswith("operation TiepNhanHoSo (deliver) not found in port BasicHttpBinding_IHoSoService")
