"""Step 1 of the pipeline: which address is the client.

The socket peer is the client, unless the peer is a configured trusted proxy;
only then are ``CF-Connecting-IP`` and ``X-Forwarded-For`` believed.  Anyone can
send those headers, so believing them from an untrusted peer would let a
client pick the address the IP allowlist checks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from crm_http_litestar.settings import Network

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str | None) -> IpAddress | None:
    """Parse an address; IPv4-mapped IPv6 (``::ffff:1.2.3.4``) becomes the IPv4 address.

    Dual-stack sockets report IPv4 clients in mapped form; the allowlist's IPv4
    rules must still match them.  A zone index (``fe80::1%eth0``) is dropped.
    """
    if not text:
        return None
    candidate = text.strip().split("%", 1)[0]
    if candidate.startswith("[") and "]" in candidate:  # "[::1]:8080" from some proxies
        candidate = candidate[1 : candidate.index("]")]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IpAddress, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def resolve_client_ip(
    peer: str | None,
    headers: Iterable[tuple[bytes, bytes]],
    trusted_proxies: Sequence[Network],
) -> IpAddress | None:
    """Return the client's address from the peer and, behind a trusted proxy, its headers.

    Behind a trusted peer, ``CF-Connecting-IP`` wins (Cloudflare sets it and
    strips client copies); otherwise ``X-Forwarded-For`` is walked from the
    right, skipping trusted proxies, and the first untrusted hop is the client —
    entries further left were written by the client and prove nothing.
    """
    address = parse_ip(peer)
    if address is None or not trusted_proxies or not _trusted(address, trusted_proxies):
        return address
    forwarded: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"cf-connecting-ip":
            cf = parse_ip(value.decode("latin-1"))
            if cf is not None:
                return cf
        elif lowered == b"x-forwarded-for":
            forwarded.extend(value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        hop_address = parse_ip(hop)
        if hop_address is None:
            # A malformed hop ends the trustworthy part of the chain.
            return address
        if not _trusted(hop_address, trusted_proxies):
            return hop_address
        address = hop_address
    return address


__all__ = ["IpAddress", "parse_ip", "resolve_client_ip"]
