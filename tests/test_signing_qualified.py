"""Qualified (eIDAS) certificates: the qcStatements extension through the command line's worker processes.

pyHanko names the qcStatements extension (and other object identifiers) in asn1crypto's tables when its validators
are imported. The ``verify`` command reads the trust anchors first, and its workers are forked from it, so these
tests run in a fresh process, as a user would, with a BER-encoded signature (its parts are re-encoded when read).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from pyhanko.sign.ades.qualified_asn1 import QcStatements

from signing.report import Verdict
from signing.trust import TrustSettings, TrustStore
from signing.verify import verify_document_sync
from tests.pki import issue_cert

SCAN = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8

#: id-pe-qcStatements (RFC 3739).
QC_STATEMENTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")


def _qc_statements() -> x509.UnrecognizedExtension:
    """QcCompliance and QcSSCD, as a qualified signature certificate carries them (ETSI EN 319 412-5)."""
    value = QcStatements([{"statement_id": "qc_compliance"}, {"statement_id": "qc_sscd"}]).dump()
    return x509.UnrecognizedExtension(QC_STATEMENTS, value)


def _indefinite(tag: bytes, content: bytes) -> bytes:
    """A BER constructed value of indefinite length."""
    return tag + b"\x80" + content + b"\x00\x00"


def _ber(signature: bytes) -> bytes:
    """``signature`` (DER ContentInfo with SignedData) re-encoded in BER: indefinite lengths for the outer
    structures and the certificate set. The signed attributes and the signature value are unchanged."""
    info = cms.ContentInfo.load(signature)
    signed = info["content"]
    certificates = b"".join(cert.dump() for cert in signed["certificates"])
    body = (
        signed["version"].dump()
        + signed["digest_algorithms"].dump()
        + signed["encap_content_info"].dump()
        + _indefinite(b"\xa0", certificates)
        + signed["signer_infos"].dump()
    )
    return _indefinite(b"\x30", info["content_type"].dump() + _indefinite(b"\xa0", _indefinite(b"\x30", body)))


@pytest.fixture(scope="module")
def qualified_signature(pki, tmp_path_factory) -> Path:
    """An attached CAdES signature over :data:`SCAN` by a qualified certificate the test CA issued, in BER."""
    directory = tmp_path_factory.mktemp("qualified")
    signer = issue_cert(pki.ca, "qualified", directory, subject_cn="Trần Thị B", extensions=[_qc_statements()])

    async def sign() -> bytes:
        info = await signer.pyhanko_signer().async_sign_general_data(SCAN, "sha256", detached=False, use_cades=True)
        return info.dump()

    path = directory / "scan.png.p7m"
    path.write_bytes(_ber(asyncio.run(sign())))
    return path


def _trust(pki) -> list[str]:
    args = ["--trust-anchor", str(pki.root.cert_path), "--cert", str(pki.ca.cert_path)]
    for crl in pki.crl_paths:
        args += ["--crl", str(crl)]
    return args


def test_the_signature_is_really_ber_with_a_qualified_signer(qualified_signature):
    data = qualified_signature.read_bytes()
    assert data[:2] == b"\x30\x80"
    signed = cms.ContentInfo.load(data)["content"]
    [signer] = [c.chosen for c in signed["certificates"] if not c.chosen.ca]
    assert "qc_statements" in {ext["extn_id"].native for ext in signer["tbs_certificate"]["extensions"]}


def test_a_qualified_signer_is_valid_in_process(pki, qualified_signature):
    store = TrustStore.load(
        TrustSettings(trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path], crls=pki.crl_paths)
    )
    report = verify_document_sync(qualified_signature.read_bytes(), store, filename=qualified_signature.name)
    assert report.verdict is Verdict.VALID, report.to_json()


def test_a_qualified_signer_is_valid_through_the_command_line(pki, qualified_signature):
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "verify", "--json", "--offline", *_trust(pki), str(qualified_signature)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    [report] = json.loads(proc.stdout)
    assert (report["format"], report["verdict"]) == ("cades", "valid"), report
    assert report["signatures"][0]["signer"]["common_name"] == "Trần Thị B"
    assert proc.returncode == 0, proc.stderr


def test_trust_material_read_before_the_validators_load(pki, qualified_signature):
    """The library's documented order in a fresh process: the store is loaded (its certificates parsed) before the
    validators are imported."""
    code = textwrap.dedent(
        f"""
        import json
        from signing import TrustSettings, TrustStore, verify_document_sync
        store = TrustStore.load(TrustSettings(trust_anchors=[{str(pki.root.cert_path)!r}],
                                              intermediates=[{str(pki.ca.cert_path)!r}],
                                              crls={[str(p) for p in pki.crl_paths]!r}))
        data = open({str(qualified_signature)!r}, "rb").read()
        print(json.dumps(verify_document_sync(data, store, filename="scan.png.p7m").to_json()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "valid", report


def test_names_registered_after_a_table_was_built_are_usable():
    """A certificate extension and a content type parsed before pyHanko's modules are imported (the content sniffer
    reads CMS data without them) leave asn1crypto's tables complete once the names are registered."""
    code = textwrap.dedent(
        """
        from asn1crypto import cms, x509
        x509.ExtensionId("basic_constraints")
        cms.ContentType("signed_data")
        cms.CMSAttributeType("content_type")
        from signing.asn1types import register_object_identifiers
        register_object_identifiers()
        assert x509.ExtensionId("qc_statements").dotted == "1.3.6.1.5.5.7.1.3"
        assert cms.ContentType("tst_info").dotted == "1.2.840.113549.1.9.16.1.4"
        assert cms.CMSAttributeType("signature_policy_identifier").dotted == "1.2.840.113549.1.9.16.2.15"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
