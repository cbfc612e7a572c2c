"""Shared values for the tests of the adapters' HTTP client factory."""

from __future__ import annotations

from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy

BASE = "https://motcua.soxaydung.example.vn/api"
LOCAL = AddressPolicy(allow_private=True)


def settings(**overrides) -> ClientSettings:
    return ClientSettings(**{"base_url": BASE, **overrides})
