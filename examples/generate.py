"""Regenerate the bundled sample trust material and documents in ``examples/``, and the demo's copy of them.

A sample PKI (root, issuing CA, signers) with long-lived certificates and CRLs, and documents that show every
verdict. Only for demonstrations: these keys are public. The files ``dvc-gateway demo`` reads (``SAMPLE_FILES``,
the catalogue among them) are then copied to the package data folder ``gateway/demo_data``, so that the demo runs
from an installed wheel; ``tests/test_demo.py`` checks that both copies are the same. Run from the repository root:

    .venv/bin/python examples/generate.py
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_DATA = HERE.parent / "gateway" / "demo_data"
sys.path.insert(0, str(HERE.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from pyhanko.pdf_utils import generic  # noqa: E402
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402

from gateway.commands.demo_story import SAMPLE_FILES  # noqa: E402
from tests.documents import make_form, make_pdf, sign_cms, sign_pdf, sign_xml  # noqa: E402
from tests.pki import issue_cert, make_crl  # noqa: E402

YEARS = timedelta(days=365)


def write_crl(crl, path: Path) -> None:
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))


def changed_after_signing(signed: bytes) -> bytes:
    """An incremental update that replaces the signed page's text: what a forger would do."""
    writer = IncrementalPdfFileWriter(BytesIO(signed))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    contents = page.raw_get("/Contents")
    stream = generic.StreamObject(stream_data=b"BT /F1 18 Tf 72 720 Td (Noi dung da bi sua) Tj ET")
    writer.mark_update(contents)
    writer.objects[(contents.generation, contents.idnum)] = stream
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def copy_demo_data() -> None:
    """Copy the files the demo reads from ``examples/`` to the package data folder ``gateway/demo_data``."""
    for name in SAMPLE_FILES:
        target = DEMO_DATA / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / name, target)


def main() -> None:
    now = datetime.now(UTC)
    scratch = HERE / ".keys"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    trust, docs = HERE / "trust", HERE / "documents"
    for directory in (trust, docs):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
    (trust / "crls").mkdir()

    long = {"not_before": now - timedelta(days=1), "not_after": now + 20 * YEARS}
    root = issue_cert(None, "root", scratch, subject_cn="Sample Root CA Việt Nam", ca=True, **long)
    ca = issue_cert(root, "ca", scratch, subject_cn="Sample Issuing CA Việt Nam", ca=True, **long)
    good = issue_cert(ca, "good", scratch, subject_cn="Nguyễn Văn A", **long)
    revoked = issue_cert(ca, "revoked", scratch, subject_cn="Trần Thị B", **long)
    expired = issue_cert(
        ca, "expired", scratch, subject_cn="Lê Văn C", not_before=now - 3 * YEARS, not_after=now - YEARS
    )
    stranger_root = issue_cert(None, "stranger-root", scratch, subject_cn="Unknown Root CA", ca=True, **long)
    stranger = issue_cert(stranger_root, "stranger", scratch, subject_cn="Phạm Văn D", **long)

    shutil.copy(root.cert_path, trust / "root.pem")
    shutil.copy(ca.cert_path, trust / "ca.pem")
    crl_dates = {"this_update": now - timedelta(hours=1), "next_update": now + 20 * YEARS}
    write_crl(make_crl(ca, [(revoked.cert, now - timedelta(hours=12))], **crl_dates), trust / "crls" / "ca.crl")
    write_crl(make_crl(root, [], **crl_dates), trust / "crls" / "root.crl")

    pdf = make_pdf("Don de nghi cap giay phep xay dung")
    signed = sign_pdf(pdf, good)
    (docs / "don-de-nghi.pdf").write_bytes(signed)
    (docs / "don-da-sua.pdf").write_bytes(changed_after_signing(signed))
    (docs / "giay-uy-quyen.pdf").write_bytes(sign_pdf(pdf, revoked))
    (docs / "cam-ket.pdf").write_bytes(sign_pdf(pdf, expired))
    (docs / "hop-dong.pdf").write_bytes(sign_pdf(pdf, stranger))
    (docs / "ban-sao.pdf").write_bytes(pdf)
    (docs / "to-khai.xml").write_bytes(sign_xml(make_form(), good))
    scan = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64  # stands for a scanned ID card image
    (docs / "anh-cccd.jpg").write_bytes(scan)
    (docs / "anh-cccd.jpg.p7s").write_bytes(sign_cms(scan, good))
    shutil.rmtree(scratch)
    copy_demo_data()
    print(f"wrote {trust} and {docs}, and copied the demo's files to {DEMO_DATA}")


if __name__ == "__main__":
    main()
