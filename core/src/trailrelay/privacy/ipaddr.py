"""IP addresses as CloudTrail writes them: lenient parsing and prefix truncation."""

from __future__ import annotations

import ipaddress

__all__ = ["canonical_ip", "parse_ip", "truncate_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(value: str) -> IPAddress | None:
    """The address in ``value``, or None when it is not one (service names, ``AWS Internal``).

    Dotted quads with leading zeros (``225.01.00.16``, which :mod:`ipaddress` refuses) are read
    as decimal octets so that they are truncated like any other address, not passed through.
    """
    if not value or len(value) > 64 or not (value[0].isdigit() or value[0] in ":abcdefABCDEF"):
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    parts = value.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        octets = [int(p) for p in parts]
        if all(o <= 255 for o in octets):
            return ipaddress.IPv4Address(bytes(octets))
    return None


def canonical_ip(value: str) -> str | None:
    """The canonical text of the address in ``value`` (``2001:DB8::1`` → ``2001:db8::1``), or None."""
    ip = parse_ip(value)
    return None if ip is None else str(ip)


def truncate_ip(value: str, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> str | None:
    """The network address of ``value``'s prefix (``203.0.113.7`` → ``203.0.113.0``); None if no IP.

    The result is a plain address, not CIDR text, so SIEM fields typed as IP keep working.
    IPv4-mapped IPv6 addresses are truncated as IPv4.
    """
    ip = parse_ip(value)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is None:
            net6 = ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)
            return str(net6.network_address)
        net4 = ipaddress.IPv4Network((mapped, ipv4_prefix), strict=False)
        return f"::ffff:{net4.network_address}"
    net = ipaddress.IPv4Network((ip, ipv4_prefix), strict=False)
    return str(net.network_address)
