"""IP addresses as CloudTrail writes them: lenient parsing and prefix truncation."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["canonical_ip", "parse_ip", "truncate_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EMBEDDED_IPV4 = (
    (ipaddress.IPv6Network("2002::/16"), 16),  # 6to4: the site's IPv4 address follows the prefix
    (ipaddress.IPv6Network("2001::/32"), 32),  # Teredo: the server's IPv4, later the client's
    (ipaddress.IPv6Network("64:ff9b::/96"), 96),  # NAT64
    (ipaddress.IPv6Network("::/96"), 96),  # IPv4-compatible (deprecated)
)
"""IPv6 ranges that carry an IPv4 address, with the bit where it starts (an IPv4-mapped
address is truncated as the IPv4 address it is)."""
_SCOPE = re.compile(r"[\w.-]{1,32}")
"""An IPv6 zone (``fe80::1%eth0``); :mod:`ipaddress` takes any text after the ``%``."""

_V4 = r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)"
_V6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?:%[\w.-]+)?"
_IN_TEXT = re.compile(rf"({_V6}|{_V4})(?:/(\d{{1,3}}))?")
"""An address inside a longer value, with its CIDR prefix length if it has one."""


def parse_ip(value: str) -> IPAddress | None:
    """The address in ``value``, or None when it is not one (service names, ``AWS Internal``).

    Dotted quads with leading zeros (``225.01.00.16``, which :mod:`ipaddress` refuses) are read
    as decimal octets so that they are truncated like any other address, not passed through.
    """
    if not value or len(value) > 64 or not (value[0].isdigit() or value[0] in ":abcdefABCDEF"):
        return None
    if "%" in value and not _SCOPE.fullmatch(value.partition("%")[2]):
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
    """``value`` with every address in it truncated to its prefix; None when nothing in it changes.

    ``203.0.113.7`` → ``203.0.113.0``: a plain address stays a plain address, so SIEM fields
    typed as IP keep working. An address inside a longer value is truncated where it stands:
    ``203.0.113.7:443``, ``[2001:db8::1]:443``, `` 203.0.113.7``, ``203.0.113.7, 10.0.0.1``,
    ``client 203.0.113.7 refused``; a CIDR keeps at most the truncation's prefix length
    (``203.0.113.7/32`` → ``203.0.113.0/24``). IPv6 addresses that carry an IPv4 address
    (mapped, 6to4, Teredo, NAT64) keep no more of it than ``ipv4_prefix`` allows. What does not
    parse as an address stays as it is: ``999.1.1.1``, ``1.2.3.4.5``, host names (also those
    that spell an address, ``ip-203-0-113-7``), service names, ``AWS Internal``.
    """
    ip = parse_ip(value)
    if ip is not None:
        truncated = _truncated(ip, None, ipv4_prefix, ipv6_prefix)
    else:
        truncated = _IN_TEXT.sub(lambda m: _in_text(m, ipv4_prefix, ipv6_prefix), value)
    return truncated if truncated != value else None


def _in_text(match: re.Match[str], ipv4_prefix: int, ipv6_prefix: int) -> str:
    ip = parse_ip(match.group(1))
    if ip is None:
        return match.group(0)
    length = match.group(2)
    return _truncated(ip, None if length is None else int(length), ipv4_prefix, ipv6_prefix)


def _truncated(ip: IPAddress, length: int | None, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The network address of ``ip``'s prefix; with ``/length`` (CIDR) when ``length`` is given."""
    keep = _kept_bits(ip, ipv4_prefix, ipv6_prefix)
    if length is not None:
        keep = min(keep, length)
    network = ipaddress.ip_network((ip, keep), strict=False)
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    text = f"::ffff:{mapped}" if mapped is not None else str(network.network_address)
    return text if length is None else f"{text}/{keep}"


def _kept_bits(ip: IPAddress, ipv4_prefix: int, ipv6_prefix: int) -> int:
    """How many leading bits of ``ip`` truncation keeps (of an embedded IPv4: no more than its rule)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ipv4_prefix
    if ip.ipv4_mapped is not None:
        return 96 + ipv4_prefix
    for network, at in _EMBEDDED_IPV4:
        if ip in network:
            return min(ipv6_prefix, at + ipv4_prefix)
    return ipv6_prefix
