"""CMS / PKCS#7 signatures (CAdES-BES and up) over any file: scans, images, office documents.

A detached signature (``don.pdf.p7s`` beside ``don.pdf``) is checked against the file's bytes; an attached one
(``.p7m``) against the content it carries. pyHanko's ETSI AdES validation does the work; each ``SignerInfo`` is
validated on its own so a countersigned or multi-signer file reports every signature.
"""

from __future__ import annotations

import hashlib
import logging

from asn1crypto import cms, core, pem
from pyhanko.sign.general import get_pyca_cryptography_hash
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from .adesval import validate_signed_data
from .report import Format, SignatureReport, SignatureResult, format_failure
from .trust import TrustStore

logger = logging.getLogger(__name__)


class NotCMSError(ValueError):
    """The bytes are not a CMS SignedData structure."""


def parse_signed_data(signature: bytes) -> cms.SignedData:
    """The ``SignedData`` in DER, PEM (``PKCS7``/``CMS``) or base64 bytes; :class:`NotCMSError` otherwise."""
    data = signature
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise NotCMSError(f"CMS content type is {info['content_type'].native}, not signed data")
        signed = info["content"]
        # Parse the parts every validation needs now, so a malformed structure fails here (a full `.native`
        # parse would cost more than the validation itself); anything deeper is caught per signer.
        signed["encap_content_info"]["content_type"].native  # noqa: B018
        for signer_info in signed["signer_infos"]:
            signer_info["sid"].native  # noqa: B018
            signer_info["digest_algorithm"]["algorithm"].native  # noqa: B018
    except NotCMSError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise NotCMSError(f"not a CMS signature: {exc}") from exc
    return signed


def looks_like_cms(data: bytes) -> bool:
    try:
        parse_signed_data(data)
    except NotCMSError:
        return False
    return True


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
    report = SignatureReport(file=file, format=Format.CADES)
    try:
        signed_data = parse_signed_data(signature)
    except NotCMSError as exc:
        report.signatures.append(format_failure(str(exc)))
        return report
    embedded = _encapsulated(signed_data)
    if embedded is not None:
        if content is not None and embedded != content:
            report.signatures.append(format_failure("the signature carries content that differs from the given file"))
            return report
        content = None  # attached: pyHanko hashes the encapsulated content itself
    elif content is None:
        report.signatures.append(format_failure("detached signature given without the signed file"))
        return report
    infos = signed_data["signer_infos"]
    timing = ValidationTimingInfo.now()
    for index in range(len(infos)):
        try:
            one = signed_data if len(infos) == 1 else _single_signer(signed_data, index)
            result = await validate_signer(one, content, store, timing=timing)
        except Exception as exc:  # noqa: BLE001 - the per-signer boundary: an error is never `valid`
            logger.warning("CMS signature could not be validated: %s", type(exc).__name__)
            result = format_failure(f"signer {index + 1} could not be processed: {type(exc).__name__}: {exc}")
        report.signatures.append(result)
    return report
