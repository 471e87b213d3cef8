"""A location's IP allowlist entry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from crm_domain.entities._fields import aware, optional_text, text, utc
from crm_domain.errors import ValidationError
from crm_domain.values import cidr_version, parse_cidr


def _canonical_cidr(_i: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if parse_cidr(value, field=attribute.name) != value:
        raise ValidationError(attribute.name, f"must be canonical, e.g. {parse_cidr(value)}")


@attrs.frozen(slots=True, kw_only=True)
class IpRule:
    """One allowed IPv4 or IPv6 network for a location."""

    id: str = attrs.field(validator=text(64))
    tenant_id: str = attrs.field(validator=text(64))
    cidr: str = attrs.field(validator=_canonical_cidr)
    description: str | None = attrs.field(default=None, validator=optional_text(500))
    is_active: bool = True
    created_at: datetime = attrs.field(converter=utc, validator=aware)
    created_by: str = attrs.field(validator=text(255))

    @property
    def ip_version(self) -> int:
        """4 or 6."""
        return cidr_version(self.cidr)
