"""The validation boundary, format detection, trust loading and off-loop verification."""

import asyncio

import pytest

from signing import Document, TrustMaterialError, TrustSettings, TrustStore, Verdict, Verifier, detect_format
from signing.report import SignatureReport, SubIndication
from signing.verify import find_detached_signature, verify_document, verify_document_sync

CONTENT = b"%%scan%%" * 1000


@pytest.fixture(scope="module")
def settings(pki) -> TrustSettings:
    return TrustSettings(trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path], crls=pki.crl_paths)


@pytest.fixture(scope="module")
def signature(pki) -> bytes:
    info = asyncio.run(pki.good.pyhanko_signer().async_sign_general_data(CONTENT, "sha256", detached=True))
    return info.dump()


@pytest.mark.parametrize(
    ("data", "name", "kind"),
    [
        (b"%PDF-1.7\n...", "x.bin", "pdf"),
        (b"\n\n%PDF-1.4", "x", "pdf"),
        (b'<?xml version="1.0"?><a/>', "x.pdf", "xml"),
        (b"\xef\xbb\xbf<ToKhai/>", "", "xml"),
        (b"-----BEGIN PKCS7-----\n", "", "cms"),
        (b"GIF89a", "a.xml", "xml"),
        (b"GIF89a", "a.gif", "other"),
        (b"", "", "other"),
    ],
)
def test_format_is_detected_from_content(data, name, kind):
    assert detect_format(data, name) == kind


def test_unsigned_file_of_no_known_format(settings):
    report = verify_document_sync(b"just text", TrustStore.load(settings), filename="a.txt")
    assert report.verdict is Verdict.UNSIGNED
    assert report.to_json()["format"] == "none"


async def test_an_exception_inside_a_validator_becomes_format_failure(settings, monkeypatch):
    import signing.cms

    async def explode(*args, **kwargs):
        raise KeyError("/Deep")

    monkeypatch.setattr(signing.cms, "validate_cms", explode)
    report = await verify_document(b"x", TrustStore.load(settings), filename="x", detached_signature=b"y")
    assert report.verdict is Verdict.INVALID
    assert report.signatures[0].sub_indication is SubIndication.FORMAT_FAILURE
    assert report.originals_check_required is True


def test_trust_material_from_directories_and_pem_bundles(pki, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.root.cert_path.read_bytes() + pki.foreign_root.cert_path.read_bytes())
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    (crl_dir / "ca.crl").write_bytes(pki.crl_path.read_bytes())
    (crl_dir / "root.pem").write_bytes(pki.root_crl_pem_path.read_bytes())
    store = TrustStore.load(TrustSettings(trust_anchors=[bundle], crls=[crl_dir]))
    assert len(store.anchors) == 2
    assert len(store.crls) == 2


@pytest.mark.parametrize(
    "content", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
def test_unreadable_trust_anchor_is_a_clear_error(tmp_path, content):
    bad = tmp_path / "root.pem"
    bad.write_bytes(content)
    with pytest.raises(TrustMaterialError, match=r"root\.pem: not a readable certificate"):
        TrustStore.load(TrustSettings(trust_anchors=[bad]))


def test_missing_crl_is_a_clear_error(tmp_path):
    with pytest.raises(TrustMaterialError, match="no such file"):
        TrustStore.load(TrustSettings(crls=[tmp_path / "nope.crl"]))


def test_store_is_parsed_once_and_reused(settings, signature):
    store = TrustStore.load(settings)
    spec = store.spec
    for _ in range(3):
        assert verify_document_sync(CONTENT, store, detached_signature=signature).verdict is Verdict.VALID
    assert store.spec is spec


def test_no_anchor_means_nothing_is_trusted(settings, signature):
    # No system or certifi store is ever consulted: without configured anchors nothing chains.
    empty = TrustStore.load(TrustSettings(crls=settings.crls))
    report = verify_document_sync(CONTENT, empty, detached_signature=signature)
    assert report.verdict is Verdict.UNTRUSTED
    assert report.signatures[0].sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND


async def test_verifier_does_not_block_the_event_loop(settings, signature):
    verifier = Verifier.from_settings(settings)
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    reports = await asyncio.gather(*(verifier.verify(Document(CONTENT, "scan.png", signature)) for _ in range(4)))
    done.set()
    await task
    verifier.close()
    assert [r.verdict for r in reports] == [Verdict.VALID] * 4
    assert ticks > 50  # the loop kept running while the four validations ran in worker threads


def test_batch_on_two_processes_equals_one_process(settings, signature):
    verifier = Verifier.from_settings(settings)
    docs = [Document(CONTENT, f"f{i}", signature) for i in range(4)] + [Document(b"x", "plain")]
    done = []
    parallel = verifier.verify_batch(docs, workers=2, on_done=lambda: done.append(1))
    serial = verifier.verify_batch(docs, workers=1)
    verifier.close()
    assert all(isinstance(r, SignatureReport) for r in [*parallel, *serial])
    assert [r.verdict for r in parallel] == [r.verdict for r in serial] == [Verdict.VALID] * 4 + [Verdict.UNSIGNED]
    assert [r.file for r in parallel] == [d.filename for d in docs]
    assert [r.to_json() for r in parallel] == [r.to_json() for r in serial]
    assert len(done) == len(docs)


def test_verify_and_verify_batch_return_the_same_report(settings, signature):
    verifier = Verifier.from_settings(settings)
    doc = Document(CONTENT, "scan.png", signature)
    single = asyncio.run(verifier.verify(doc))
    (batched,) = verifier.verify_batch([doc], workers=1)
    verifier.close()
    assert type(single) is type(batched) is SignatureReport
    assert single.to_json() == batched.to_json()


def test_detached_signature_found_beside_the_file(tmp_path):
    doc = tmp_path / "don.pdf"
    doc.write_bytes(b"%PDF")
    assert find_detached_signature(doc) is None
    (tmp_path / "don.p7s").write_bytes(b"0")
    assert find_detached_signature(doc) == tmp_path / "don.p7s"
    (tmp_path / "don.pdf.p7s").write_bytes(b"0")
    assert find_detached_signature(doc) == tmp_path / "don.pdf.p7s"
    assert find_detached_signature(tmp_path / "don.p7s") is None


def test_signing_imports_nothing_from_gateway_and_only_the_guards_from_adapters():
    import ast
    from pathlib import Path

    import signing

    allowed = {"adapters.connections", "adapters.netguard", "adapters.xmlguard"}
    for path in Path(signing.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                assert top != "gateway", (path.name, name)
                assert top != "adapters" or name in allowed, (path.name, name)
