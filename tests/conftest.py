"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pki import PKIServer, TestPKI, build_pki


@pytest.fixture(scope="session")
def _pki_http() -> Iterator[PKIServer]:
    """The PKI HTTP server, started but not yet attached (its port must be known before the PKI is built)."""
    with PKIServer() as server:
        yield server


@pytest.fixture(scope="session")
def pki(_pki_http: PKIServer, tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The test PKI (built once per session), its CRL/OCSP URLs pointing at the local PKI server."""
    built = build_pki(
        tmp_path_factory.mktemp("pki"),
        ocsp_url=f"{_pki_http.base_url}/ocsp",
        crl_url=f"{_pki_http.base_url}/ca.crl",
        root_crl_url=f"{_pki_http.base_url}/root.crl",
    )
    _pki_http.attach(built)
    return built


@pytest.fixture(scope="session")
def pki_server(_pki_http: PKIServer, pki: TestPKI) -> PKIServer:
    """The started PKI server, serving ``pki``."""
    return _pki_http
