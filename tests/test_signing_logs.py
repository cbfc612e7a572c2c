"""Verifying a revoked or expired document as a library: the report says why, the log carries no pyHanko traceback
(nor the signer's name); pyHanko's other records still reach the log."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pyhanko_certvalidator.errors import InvalidCertificateError, PathBuildingError

from signing import TrustSettings, TrustStore, verify_document_sync
from signing.pyhanko_logs import QUIETED_LOGGERS, quiet_expected_outcomes
from signing.report import Verdict

DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20  # any file: a scanned image, signed as attached CAdES


async def attached_signature(identity) -> bytes:
    signer = identity.pyhanko_signer()
    return (await signer.async_sign_general_data(DATA, "sha256", detached=False, use_cades=True)).dump()


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore.load(
        TrustSettings(trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path], crls=pki.crl_paths)
    )


@pytest.mark.parametrize(("who", "verdict"), [("revoked", Verdict.REVOKED), ("expired", Verdict.EXPIRED)])
async def test_a_refused_signer_leaves_no_traceback_in_the_log(pki, store, caplog, who: str, verdict: Verdict) -> None:
    signed = await attached_signature(getattr(pki, who))
    caplog.set_level(logging.DEBUG)
    report = await asyncio.to_thread(verify_document_sync, signed, store, filename="don.p7m")
    assert report.verdict is verdict
    records = [r for r in caplog.records if r.name.startswith(("pyhanko", "signing"))]
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
    logged = caplog.text
    assert "Traceback" not in logged
    assert "Lê Văn Cường" not in logged and "Phạm Thị Dung" not in logged  # the signers' names


def test_other_pyhanko_records_still_reach_the_log(caplog) -> None:
    quiet_expected_outcomes()
    quiet_expected_outcomes()  # idempotent
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger(QUIETED_LOGGERS[0])
    assert len(logger.filters) == 1
    logger.warning("Validation error: not for signing", exc_info=InvalidCertificateError("no signing key usage"))
    logger.error("Processing error in validation process", exc_info=RuntimeError("boom"))
    logging.getLogger(QUIETED_LOGGERS[1]).warning(PathBuildingError("no path"))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pyhanko")] == [
        "Processing error in validation process"
    ]
