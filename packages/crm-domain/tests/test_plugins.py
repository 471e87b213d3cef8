"""Adapters are found by configuration; a missing one names the package to install."""

from __future__ import annotations

import pytest

from crm_domain.errors import ValidationError
from crm_domain.plugins import AdapterNotInstalled, load_ai, load_gateway, url_scheme


def test_url_scheme() -> None:
    assert url_scheme("sqlite+aiosqlite:///./crm.db") == "sqlite+aiosqlite"
    assert url_scheme("D1://acct/db") == "d1"
    with pytest.raises(ValidationError) as info:
        url_scheme("crm.db")
    assert info.value.field == "CRM_DATABASE_URL"


def test_missing_gateway_names_the_package() -> None:
    with pytest.raises(AdapterNotInstalled) as info:
        load_gateway("oneos://cluster/bucket")
    assert info.value.field == "CRM_DATABASE_URL"
    assert "oneos" in info.value.detail


def test_missing_ai_provider_names_the_setting() -> None:
    with pytest.raises(AdapterNotInstalled) as info:
        load_ai("crystal-ball")
    assert info.value.field == "CRM_AI_PROVIDER"
