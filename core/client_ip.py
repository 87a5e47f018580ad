"""The real client address of a request, believing X-Forwarded-For only from trusted proxies.

The rule: start from the TCP peer (REMOTE_ADDR). While the address in hand belongs to a
network in ``TRUSTED_PROXIES``, step one hop left in X-Forwarded-For (the address that
proxy says it received the request from). The first address that is not a trusted proxy
is the client. A client that writes its own X-Forwarded-For therefore changes nothing:
its header is read only if it *is* a trusted proxy. Run uvicorn with ``--no-proxy-headers``
(``manage.py serve`` does) so that this is the only place the header is interpreted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(value: str) -> IPAddress | None:
    """An address from a header or socket value; tolerates ``1.2.3.4:80`` and ``[::1]:80``.
    IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) become IPv4."""
    text = value.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    if "%" in text:  # zone index (fe80::1%eth0)
        text = text.split("%", 1)[0]
    try:
        return unmap_ipv4(ipaddress.ip_address(text))
    except ValueError:
        return None


def normalized_ip(text: str) -> str:
    """The canonical text of an exact IP address (IPv4-mapped IPv6 as IPv4); ValueError
    when ``text`` is not one. Nothing is tolerated around the address, nor an IPv6 zone
    (``fe80::1%eth0``): it names an interface of the sender's machine, and PostgreSQL's
    ``inet`` cannot hold it.

    Canonical dotted-quad IPv4, by far the most common input, is recognised by the C
    library (strict on Linux: four decimal octets, no leading zeros) and returned as is,
    about eight times faster than building an ``ipaddress`` object; anything else goes through
    ``ipaddress``, which decides.
    """
    try:
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text:
            return text
    except (OSError, ValueError):
        pass
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ValueError(f"{text!r} has a zone index")
    return str(unmap_ipv4(address))


def unmap_ipv4(address: IPAddress) -> IPAddress:
    """``::ffff:1.2.3.4`` (a dual-stack socket's view of an IPv4 client) as ``1.2.3.4``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(
    remote_addr: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's address as a string, or None when the peer address is unknown."""
    current = parse_ip(remote_addr or "")
    if current is None:
        return None
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    while hops and _is_trusted(current, trusted):
        previous = parse_ip(hops.pop())
        if previous is None:
            break  # a garbled hop: keep the last address we could trust
        current = previous
    return str(current)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
