"""Throwaway PKI shared by the OAuth tests (key generation is the slow part)."""

from __future__ import annotations

import pytest

from mtlsauth.testing import CA


@pytest.fixture(scope="session")
def ca() -> CA:
    return CA(organization="oauth-test")
