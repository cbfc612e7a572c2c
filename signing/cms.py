"""CMS / PKCS#7 signatures (CAdES-BES and up) over any file: scans, images, office documents.

A detached signature (``don.pdf.p7s`` beside ``don.pdf``) is checked against the file's bytes; an attached one
(``.p7m``) against the content it carries. pyHanko's ETSI AdES validation does the work; each ``SignerInfo`` is
validated on its own so a countersigned or multi-signer file reports every signature.
"""

from __future__ import annotations

import hashlib
import logging

from asn1crypto import cms, core
from pyhanko.sign.general import get_pyca_cryptography_hash
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from .adesval import validate_signed_data
from .reasons import explain
from .report import Format, SignatureReport, SignatureResult, format_failure
from .sniff import NotCMSError, looks_like_cms, parse_signed_data
from .trust import TrustStore

__all__ = ["NotCMSError", "looks_like_cms", "parse_signed_data", "validate_cms", "validate_signer"]

logger = logging.getLogger(__name__)


def _single_signer(signed_data: cms.SignedData, index: int) -> cms.SignedData:
    """A copy of ``signed_data`` carrying only its ``index``-th SignerInfo (pyHanko validates the first)."""
    copy = signed_data.copy()
    infos = copy["signer_infos"]
    copy["signer_infos"] = cms.SignerInfos([infos[index]])
    return copy


def _digest(content: bytes, signer_info: cms.SignerInfo) -> bytes:
    algo = signer_info["digest_algorithm"]["algorithm"].native
    if algo in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"):
        return hashlib.new(algo.replace("_", "-") if algo.startswith("sha3") else algo, content).digest()
    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(get_pyca_cryptography_hash(algo))
    digest.update(content)
    return digest.finalize()


async def validate_signer(
    signed_data: cms.SignedData,
    content: bytes | None,
    store: TrustStore,
    *,
    timing: ValidationTimingInfo | None = None,
) -> SignatureResult:
    """Validate the first SignerInfo of ``signed_data`` with the store's policy.

    ``content`` is the detached file; ``None`` for an attached signature, whose encapsulated content is hashed.
    """
    signer_info = signed_data["signer_infos"][0]
    return await validate_signed_data(
        signed_data,
        store.spec,
        timing=timing or ValidationTimingInfo.now(),
        raw_digest=_digest(content, signer_info) if content is not None else None,
        crl_issuers=store.crl_issuer_cache(store.spec),
    )


def _encapsulated(signed_data: cms.SignedData) -> bytes | None:
    content = signed_data["encap_content_info"]["content"]
    if isinstance(content, core.Void) or content.native is None:
        return None
    value = content.native
    return value if isinstance(value, bytes) else content.contents


async def validate_cms(
    signature: bytes,
    store: TrustStore,
    *,
    content: bytes | None = None,
    file: str = "",
) -> SignatureReport:
    """Verify a CMS signature, detached over ``content`` or attached (content inside the signature)."""
    try:
        signed_data = parse_signed_data(signature)
    except NotCMSError as exc:
        return _report(file, format_failure(str(exc)))
    embedded = _encapsulated(signed_data)
    if embedded is not None:
        if content is not None and embedded != content:
            return _report(file, format_failure("the signature carries content that differs from the given file"))
        content = None  # attached: pyHanko hashes the encapsulated content itself
    elif content is None:
        return _report(file, format_failure("detached signature given without the signed file"))
    infos = signed_data["signer_infos"]
    timing = ValidationTimingInfo.now()
    results = []
    for index in range(len(infos)):
        try:
            one = signed_data if len(infos) == 1 else _single_signer(signed_data, index)
            result = await validate_signer(one, content, store, timing=timing)
        except Exception as exc:  # noqa: BLE001 - the per-signer boundary: an error is never `valid`
            logger.warning("CMS signature could not be validated: %s", type(exc).__name__)
            result = format_failure(f"signer {index + 1} could not be processed: {explain(exc)}")
        results.append(result)
    return _report(file, *results)


def _report(file: str, *results: SignatureResult) -> SignatureReport:
    return SignatureReport(file=file, format=Format.CADES, signatures=results)
