"""Properties of the access policies (Hypothesis).

* CIDR membership equals the stdlib ``ipaddress`` answer, mapped addresses included;
* RBAC denies by default, and a custom permission changes only the named grant.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_domain.entities import Action, Effect, PermissionOverride, Resource, Role
from crm_domain.policies import DEFAULT_GRANTS, IpAllowlist, is_allowed

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _v4_networks() -> st.SearchStrategy[Network]:
    return st.builds(
        lambda addr, prefix: ipaddress.ip_network(f"{addr}/{prefix}", strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    )


def _v6_networks() -> st.SearchStrategy[Network]:
    return st.builds(
        lambda addr, prefix: ipaddress.ip_network(f"{addr}/{prefix}", strict=False),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    )


def _mapped(addr: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(f"::ffff:{addr}")


def _oracle(networks: list[Network], client: Address) -> bool:
    """The stdlib answer: IPv4-mapped clients count as their IPv4 address."""
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    for network in networks:
        if client.version == network.version and client in network:
            return True
        # An IPv6 rule written in the mapped range also names IPv4 addresses.
        if (
            isinstance(client, ipaddress.IPv4Address)
            and isinstance(network, ipaddress.IPv6Network)
            and _mapped(client) in network
        ):
            return True
    return False


@st.composite
def _nearby_addresses(draw: st.DrawFn, networks: list[Network]) -> Address:
    """Addresses near the networks' edges (where bugs live), or anywhere."""
    choice = draw(st.integers(0, 3))
    if networks and choice < 3:
        network = draw(st.sampled_from(networks))
        edge = int(network.network_address) if choice == 0 else int(network.broadcast_address)
        offset = draw(st.integers(-2, 2))
        top = (1 << network.max_prefixlen) - 1
        value = min(max(edge + offset, 0), top)
        return ipaddress.ip_address(value) if network.version == 4 else ipaddress.IPv6Address(value)
    return draw(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))


@settings(max_examples=400)
@given(
    networks=st.lists(st.one_of(_v4_networks(), _v6_networks()), max_size=8),
    data=st.data(),
    as_mapped=st.booleans(),
)
def test_membership_equals_stdlib(
    networks: list[Network], data: st.DataObject, as_mapped: bool
) -> None:
    client = data.draw(_nearby_addresses(networks))
    allowlist = IpAllowlist.from_cidrs([str(n) for n in networks])
    expected = _oracle(networks, client)
    assert allowlist.allows(str(client)) is expected
    if isinstance(client, ipaddress.IPv4Address) and as_mapped:
        # The same peer seen through a dual-stack socket.
        assert allowlist.allows(str(_mapped(client))) is expected
        assert allowlist.allows(f"::ffff:{client}") is expected


@settings(max_examples=200)
@given(networks=st.lists(_v6_networks(), max_size=4), client=st.ip_addresses(v=6))
def test_zone_id_does_not_change_the_answer(networks: list[Network], client: Address) -> None:
    allowlist = IpAllowlist.from_cidrs([str(n) for n in networks])
    assert allowlist.allows(f"{client}%eth0") is allowlist.allows(str(client))


@given(st.text(max_size=50))
def test_arbitrary_text_never_raises(text: str) -> None:
    allowlist = IpAllowlist.from_cidrs(["0.0.0.0/0", "::/0"])
    result = allowlist.allows(text)
    assert isinstance(result, bool)
    try:
        parsed: Address | None = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        parsed = None
    if parsed is not None:
        assert result


# --- RBAC -------------------------------------------------------------------

_names = st.one_of(
    st.sampled_from([r.value for r in Resource]),
    st.text(min_size=1, max_size=12),
)
_actions = st.one_of(st.sampled_from([a.value for a in Action]), st.text(min_size=1, max_size=8))
_roles = st.lists(st.sampled_from(list(Role)), max_size=4)


@given(roles=_roles, resource=_names, action=_actions)
def test_deny_by_default(roles: list[Role], resource: str, action: str) -> None:
    """Allowed exactly when a role of the caller holds that very grant."""
    expected = any(
        (resource, action) in {(r.value, a.value) for r, a in DEFAULT_GRANTS[role]}
        for role in roles
    )
    assert is_allowed(roles, [], resource, action, DEFAULT_GRANTS) is expected
    assert is_allowed(roles, [], resource, action, {}) is False


@given(
    roles=_roles,
    override_resource=st.sampled_from(list(Resource)),
    override_action=st.sampled_from(list(Action)),
    effect=st.sampled_from(list(Effect)),
    resource=st.sampled_from(list(Resource)),
    action=st.sampled_from(list(Action)),
)
def test_custom_permission_changes_only_the_named_grant(
    roles: list[Role],
    override_resource: Resource,
    override_action: Action,
    effect: Effect,
    resource: Resource,
    action: Action,
) -> None:
    override = PermissionOverride(
        resource=override_resource.value, action=override_action.value, effect=effect
    )
    without = is_allowed(roles, [], resource, action, DEFAULT_GRANTS)
    with_override = is_allowed(roles, [override], resource, action, DEFAULT_GRANTS)
    if (resource, action) == (override_resource, override_action):
        assert with_override is (effect is Effect.ALLOW)
    else:
        assert with_override is without
