"""Signature verification throughput, beside floors measured in the same run.

For each document kind (1 MB and 10 MB signed PDFs, a signed XML form, a CMS-signed 1 MB file) it prints documents
per second through ``signing`` and two floors on the same bytes:

- *library*: the same work done directly with the libraries and one prebuilt validation context with the same CRLs
  and hard-fail revocation: pyHanko for PDF and CMS; for XML, signxml (the certificate given) plus the same
  pyhanko-certvalidator path validation of the signer: what validation costs without the gateway's policy, report,
  bounds and worker process;
- *crypto*: sha256 of the same bytes plus one RSA-2048 signature verification: what any verifier must do.

``of library`` is the gateway's rate over the library floor's (1.00 = as fast as the floor). Rates are measured in
this process's CPU time, in interleaved rounds keeping the best of each, so that other load on the machine does not
decide the ratios. Then a batch of 1 MB PDFs is verified on one worker and on every core (wall-clock, the verifier's
workers started beforehand as in a running service; best of the rounds), and the fixed cost of one
``dvc-gateway verify`` call on a small file is compared, as wall-clock and as CPU time of the process and its
children, with ``python -c "import pyhanko"`` and with importing pyHanko's validation (``pyhanko.sign.validation``
loads pyHanko's signing package and its HTTP client: work any verifier built on it does before reading a byte).

Run: ``.venv/bin/python bench/bench_signing.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import subprocess
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
from pyhanko_certvalidator import CertificateValidator, ValidationContext  # noqa: E402
from signxml import XMLVerifier  # noqa: E402

from signing import Document, TrustSettings, TrustStore, Verdict, Verifier, verify_document_sync  # noqa: E402
from tests.documents import make_form, make_pdf, sign_cms, sign_pdf, sign_xml  # noqa: E402
from tests.pki import build_pki  # noqa: E402


def rate(
    work: Callable[[], object], *, min_seconds: float, min_runs: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Calls per second of ``work``, measured over at least ``min_runs`` calls and ``min_seconds``."""
    work()  # warm up
    runs, start = 0, clock()
    while runs < min_runs or clock() - start < min_seconds:
        work()
        runs += 1
    return runs / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    args = parser.parse_args()
    min_seconds, min_runs = (0.5, 2) if args.quick else (1.0, 5)
    rounds = 2 if args.quick else 3

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
        def run() -> None:
            # Parsed on every call, as the gateway does (asn1crypto keeps what it parsed inside the object).
            signed = cms.ContentInfo.load(signature)["content"]
            status = asyncio.run(async_validate_detached_cms(data, signed, signer_validation_context=cms_vc))
            assert status.bottom_line

        return run

    xml_vc = ValidationContext(**vc_args)

    def signxml_floor(data: bytes) -> Callable[[], object]:
        cert = pki.good.cert.public_bytes(serialization.Encoding.PEM)
        signer = pki.good.asn1_cert()

        def run() -> None:
            XMLVerifier().verify(data, x509_cert=cert)
            validator = CertificateValidator(signer, validation_context=xml_vc)
            asyncio.run(validator.async_validate_usage({"digital_signature"}))

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
    print(f"{'document':<18}{'gateway/s':>11}{'library/s':>11}{'crypto/s':>11}{'of library':>12}{'of crypto':>11}")
    for label, ours, library, crypto in cases:
        # Interleaved rounds, the best of each: a busy machine slows whichever ran while it was busy.
        r_ours = r_lib = r_crypto = 0.0
        for _ in range(rounds):
            r_ours = max(r_ours, rate(ours, min_seconds=min_seconds, min_runs=min_runs, clock=time.process_time))
            r_lib = max(r_lib, rate(library, min_seconds=min_seconds, min_runs=min_runs, clock=time.process_time))
            r_crypto = max(r_crypto, rate(crypto, min_seconds=min_seconds, min_runs=min_runs, clock=time.process_time))
        print(
            f"{label:<18}{r_ours:>11.1f}{r_lib:>11.1f}{r_crypto:>11.1f}"
            f"{r_ours / r_lib:>11.2f}x{r_ours / r_crypto:>10.3f}x"
        )

    cores = os.cpu_count() or 1
    docs = [Document(pdf_1mb, f"d{i}.pdf") for i in range(24 * cores)]
    verifier = Verifier(store, settings=settings)
    verifier.verify_batch(docs[: 2 * cores], workers=cores)  # start the workers: a running service has them up
    timings = {1: 0.0, cores: 0.0}
    for _ in range(rounds):
        for workers in (1, cores):
            start = time.perf_counter()
            reports = verifier.verify_batch(docs, workers=workers)
            timings[workers] = max(timings[workers], len(docs) / (time.perf_counter() - start))
            assert all(r.verdict is Verdict.VALID for r in reports)
    verifier.close()
    print(
        f"batch of {len(docs)} x PDF 1 MB: {timings[1]:.1f}/s on 1 worker, {timings[cores]:.1f}/s on {cores} "
        f"workers: {timings[cores] / timings[1]:.2f}x of one"
    )
    cli_fixed_cost(work, pki, make_pdf(), runs=3 if args.quick else 7)


def _best_cost(command: list[str], runs: int) -> tuple[float, float]:
    """The least wall-clock time and the least CPU time (the process and its children) of ``runs`` runs of
    ``command`` as a fresh process: the least disturbed runs."""
    wall = cpu = float("inf")
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=False, capture_output=True)
        wall = min(wall, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = min(cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def cli_fixed_cost(work: Path, pki: object, small_pdf: bytes, *, runs: int) -> None:
    """One ``dvc-gateway verify`` call on a small signed PDF against ``python -c "import pyhanko"``."""
    doc = work / "small.pdf"
    doc.write_bytes(sign_pdf(small_pdf, pki.good))  # type: ignore[attr-defined]
    cli = [str(Path(sys.executable).with_name("dvc-gateway")), "verify", "--trust-anchor", str(pki.root.cert_path)]  # type: ignore[attr-defined]
    cli += ["--cert", str(pki.ca.cert_path)]  # type: ignore[attr-defined]
    for crl in pki.crl_paths:  # type: ignore[attr-defined]
        cli += ["--crl", str(crl)]
    verify = _best_cost([*cli, str(doc)], runs)
    imports = _best_cost([sys.executable, "-c", "import pyhanko"], runs)
    validation = _best_cost([sys.executable, "-c", "import pyhanko.sign.validation.ades"], runs)
    for label, index in (("wall-clock", 0), ("CPU", 1)):
        print(
            f"CLI verify of one small PDF, {label}: {verify[index] * 1000:.0f} ms; "
            f"python -c 'import pyhanko': {imports[index] * 1000:.0f} ms ({verify[index] / imports[index]:.2f}x); "
            f"importing pyHanko's validation: {validation[index] * 1000:.0f} ms "
            f"({verify[index] / validation[index]:.2f}x)"
        )


if __name__ == "__main__":
    main()
