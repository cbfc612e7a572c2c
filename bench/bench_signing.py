"""Signature verification throughput, beside floors measured in the same run.

For each document kind (1 MB and 10 MB signed PDFs, a signed XML form, a CMS-signed 1 MB file) it prints documents
per second through ``signing`` and two floors on the same bytes:

- *library*: the underlying library called directly with one prebuilt validation context (pyHanko for PDF and CMS,
  signxml with the certificate given for XML): what validation costs without the gateway's policy and report;
- *crypto*: sha256 of the same bytes plus one RSA-2048 signature verification: what any verifier must do.

The ratio is the gateway's time per document over the floor's (1.0 = as fast as the floor). Finally, a batch of
1 MB PDFs is verified on one process and on every core of the machine.

Run: ``.venv/bin/python bench/bench_signing.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asn1crypto import cms  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign.validation import async_validate_detached_cms, async_validate_pdf_signature  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402
from signxml import XMLVerifier  # noqa: E402

from signing import Document, TrustSettings, TrustStore, Verdict, Verifier, verify_document_sync  # noqa: E402
from tests.documents import make_form, make_pdf, sign_cms, sign_pdf, sign_xml  # noqa: E402
from tests.pki import build_pki  # noqa: E402


def rate(work: Callable[[], object], *, min_seconds: float, min_runs: int) -> float:
    """Calls per second of ``work``, measured over at least ``min_runs`` calls and ``min_seconds``."""
    work()  # warm up
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        work()
        runs += 1
    return runs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    args = parser.parse_args()
    min_seconds, min_runs = (0.5, 2) if args.quick else (2.0, 5)

    work = Path(tempfile.mkdtemp(prefix="bench-signing-"))
    pki = build_pki(work)
    settings = TrustSettings(
        trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path], crls=list(pki.crl_paths)
    )
    store = TrustStore.load(settings)
    vc_args = {
        "trust_roots": [pki.root.asn1_cert()],
        "other_certs": [pki.ca.asn1_cert()],
        "crls": [c.read_bytes() for c in pki.crl_paths],
        "revocation_mode": "require",
    }
    pdf_vc = ValidationContext(**vc_args)
    cms_vc = ValidationContext(**vc_args)

    # The crypto floor: sha256 of the bytes plus one RSA-2048 verification.
    rsa_key = pki.good.key
    rsa_sig = rsa_key.sign(b"x" * 32, padding.PKCS1v15(), hashes.SHA256())

    def crypto_floor(data: bytes) -> Callable[[], object]:
        def run() -> None:
            hashlib.sha256(data).digest()
            rsa_key.public_key().verify(rsa_sig, b"x" * 32, padding.PKCS1v15(), hashes.SHA256())

        return run

    def gateway(data: bytes, detached: bytes | None = None) -> Callable[[], object]:
        def run() -> None:
            report = verify_document_sync(data, store, detached_signature=detached)
            assert report.verdict is Verdict.VALID, report.to_json()

        return run

    def pyhanko_pdf(data: bytes) -> Callable[[], object]:
        def run() -> None:
            sig = PdfFileReader(BytesIO(data)).embedded_signatures[0]
            status = asyncio.run(async_validate_pdf_signature(sig, pdf_vc))
            assert status.bottom_line

        return run

    def pyhanko_cms(data: bytes, signature: bytes) -> Callable[[], object]:
        signed = cms.ContentInfo.load(signature)["content"]

        def run() -> None:
            status = asyncio.run(async_validate_detached_cms(data, signed, signer_validation_context=cms_vc))
            assert status.bottom_line

        return run

    def signxml_floor(data: bytes) -> Callable[[], object]:
        cert = pki.good.cert.public_bytes(serialization.Encoding.PEM)

        def run() -> None:
            XMLVerifier().verify(data, x509_cert=cert)

        return run

    print("preparing documents ...", file=sys.stderr)
    pdf_1mb = sign_pdf(make_pdf(padding=1_000_000), pki.good)
    pdf_10mb = sign_pdf(make_pdf(padding=10_000_000), pki.good)
    xml_form = sign_xml(make_form(400), pki.good)
    blob = os.urandom(1_000_000)
    blob_sig = sign_cms(blob, pki.good)

    cases = [
        ("PDF 1 MB", gateway(pdf_1mb), pyhanko_pdf(pdf_1mb), crypto_floor(pdf_1mb)),
        ("PDF 10 MB", gateway(pdf_10mb), pyhanko_pdf(pdf_10mb), crypto_floor(pdf_10mb)),
        (f"XML form {len(xml_form) // 1024} KB", gateway(xml_form), signxml_floor(xml_form), crypto_floor(xml_form)),
        ("CMS 1 MB", gateway(blob, blob_sig), pyhanko_cms(blob, blob_sig), crypto_floor(blob)),
    ]
    print(f"{'document':<18}{'gateway/s':>11}{'library/s':>11}{'crypto/s':>11}{'x library':>11}{'x crypto':>10}")
    for label, ours, library, crypto in cases:
        r_ours = rate(ours, min_seconds=min_seconds, min_runs=min_runs)
        r_lib = rate(library, min_seconds=min_seconds, min_runs=min_runs)
        r_crypto = rate(crypto, min_seconds=min_seconds, min_runs=min_runs)
        print(
            f"{label:<18}{r_ours:>11.1f}{r_lib:>11.1f}{r_crypto:>11.1f}"
            f"{r_lib / r_ours:>10.2f}x{r_crypto / r_ours:>9.1f}x"
        )

    cores = os.cpu_count() or 1
    docs = [Document(pdf_1mb, f"d{i}.pdf") for i in range(24 * cores)]
    verifier = Verifier(store, settings=settings)
    timings = {}
    for workers in (1, cores):
        start = time.perf_counter()
        reports = verifier.verify_batch(docs, workers=workers)
        timings[workers] = len(docs) / (time.perf_counter() - start)
        assert all(r.verdict is Verdict.VALID for r in reports)
    verifier.close()
    print(
        f"batch of {len(docs)} x PDF 1 MB: {timings[1]:.1f}/s on 1 process, {timings[cores]:.1f}/s on {cores} "
        f"processes: speed-up {timings[cores] / timings[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
