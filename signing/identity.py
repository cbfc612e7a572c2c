"""Who signed: the signer's identity as Vietnamese CAs write it into certificates.

Vietnamese CAs put the holder's official identifiers into the subject, usually in the ``UID`` attribute
(0.9.2342.19200300.100.1.1) and sometimes in ``serialNumber`` (2.5.4.5), as prefixed strings such as
``MST:0101234567`` (tax code), ``CCCD:001099012345`` (citizen ID), ``CMND:…`` (old ID card) or ``HC:…`` (passport).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from asn1crypto import x509

from .report import Signer

#: Known prefixes and the names they get under ``Signer.identifiers``.
IDENTIFIER_PREFIXES: dict[str, str] = {
    "MST": "tax_code",
    "CCCD": "citizen_id",
    "CMND": "id_card",
    "HC": "passport",
    "CMT": "id_card",
    "DDCN": "citizen_id",
    "MNS": "budget_code",
}

_PREFIXED = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]{0,15})\s*[:=]\s*(.+?)\s*$")


def parse_identifiers(values: list[str]) -> dict[str, str]:
    """Map prefixed identifier strings onto named identifiers; unknown prefixes are kept verbatim.

    >>> parse_identifiers(["MST:0101234567", "CCCD:001099012345", "BHXH:123"])
    {'tax_code': '0101234567', 'citizen_id': '001099012345', 'BHXH': '123'}
    """
    identifiers: dict[str, str] = {}
    for raw in values:
        match = _PREFIXED.match(raw)
        if not match:
            continue
        prefix, value = match.group(1), match.group(2)
        key = IDENTIFIER_PREFIXES.get(prefix.upper(), prefix)
        identifiers.setdefault(key, value)
    return identifiers


def _name_values(name: x509.Name, field: str) -> list[str]:
    values: list[str] = []
    for rdn in name.chosen:
        for attr in rdn:
            if attr["type"].native == field:
                value = attr["value"].native
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                values.append(str(value))
    return values


def _first(name: x509.Name, field: str) -> str | None:
    values = _name_values(name, field)
    return values[0] if values else None


def signer_from_certificate(cert: x509.Certificate) -> Signer:
    """The signer a certificate names (a pure function of its subject, remembered for the signers seen last)."""
    return _signer_from_subject(cert.subject.dump())


@functools.lru_cache(maxsize=1024)
def _signer_from_subject(der: bytes) -> Signer:
    subject = x509.Name.load(der)
    serial = _first(subject, "serial_number")
    candidates = _name_values(subject, "user_id") + _name_values(subject, "serial_number")
    return Signer(
        common_name=_first(subject, "common_name"),
        organization=_first(subject, "organization_name"),
        serial_number=serial,
        identifiers=parse_identifiers(candidates),
    )


def describe_name(name: x509.Name) -> str:
    """A readable one-line form of a distinguished name (RFC 4514 order, most specific first)."""
    return _describe_der(name.dump())


@functools.lru_cache(maxsize=1024)
def _describe_der(der: bytes) -> str:
    """:func:`describe_name` of an encoded name: a pure function of its bytes, remembered for the names seen last."""
    return str(x509.Name.load(der).human_friendly)


def certificate_label(cert: x509.Certificate) -> str:
    """How a certificate is named in a report's ``chain``: its subject, readable."""
    return describe_name(cert.subject)


#: The identifiers that name a person, and the one that names an organisation (or a household business).
PERSONAL_IDENTIFIERS = ("citizen_id", "id_card", "passport")
ORGANISATION_IDENTIFIERS = ("tax_code",)


def normalise_identifier(value: str) -> str:
    """An identifier as compared: white space removed, upper case (passport numbers carry letters)."""
    return "".join(value.split()).upper()


def signer_is(identifiers: Mapping[str, str], wanted: Iterable[str], *, organisation: bool) -> bool:
    """Whether a signer with ``identifiers`` is the holder of one of the ``wanted`` identifiers: a person by citizen
    ID, ID card or passport number, an organisation by tax code."""
    keys = ORGANISATION_IDENTIFIERS if organisation else PERSONAL_IDENTIFIERS
    mine = {normalise_identifier(identifiers[key]) for key in keys if identifiers.get(key)}
    return bool(mine & {normalise_identifier(value) for value in wanted if value and value.strip()})
