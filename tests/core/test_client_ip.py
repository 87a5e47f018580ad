"""The client IP: X-Forwarded-For is believed only from TRUSTED_PROXIES."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import RequestFactory, override_settings

from audit.context import audit_context_get
from audit.middleware import AuditContextMiddleware
from core.client_ip import client_ip, normalized_ip

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48")]


@pytest.mark.parametrize(
    ("remote", "xff", "expected"),
    [
        # A direct client: its own address, whatever header it sends.
        ("203.0.113.5", None, "203.0.113.5"),
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # spoofed header, untrusted peer
        ("203.0.113.5", "10.0.0.1, 198.51.100.1", "203.0.113.5"),
        # One trusted proxy in front.
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
        # Two trusted proxies: the client is the first untrusted hop from the right.
        ("10.0.0.2", "198.51.100.7, 10.0.0.3", "198.51.100.7"),
        # The client tried to spoof through the proxies: only what they appended counts.
        ("10.0.0.2", "1.1.1.1, 198.51.100.7, 10.0.0.3", "198.51.100.7"),
        # IPv6 clients and proxies.
        ("2001:db8::5", None, "2001:db8::5"),
        ("2001:db8:ffff::1", "2001:db8:1::42", "2001:db8:1::42"),
        ("10.0.0.2", "[2001:db8:1::42]:4711", "2001:db8:1::42"),
        # IPv4-mapped IPv6 from a dual-stack socket.
        ("::ffff:203.0.113.9", None, "203.0.113.9"),
        # A trusted proxy that sent garbage: stop at the proxy itself.
        ("10.0.0.2", "not-an-ip", "10.0.0.2"),
        # Only proxies in the chain: the leftmost one.
        ("10.0.0.2", "10.0.0.9", "10.0.0.9"),
        ("198.51.100.4:5123", None, "198.51.100.4"),
        (None, "198.51.100.1", None),
    ],
)
def test_client_ip(remote: str | None, xff: str | None, expected: str | None) -> None:
    assert client_ip(remote, xff, TRUSTED) == expected


def test_nothing_is_trusted_by_default() -> None:
    assert client_ip("10.0.0.2", "198.51.100.7", []) == "10.0.0.2"


@override_settings(TRUSTED_PROXIES=[ipaddress.ip_network("127.0.0.1/32")])
def test_middleware_puts_the_real_ip_in_the_audit_context() -> None:
    seen: list[str | None] = []

    def view(request: object) -> object:
        seen.append(audit_context_get().ip)
        return object()

    middleware = AuditContextMiddleware(view)  # type: ignore[arg-type]
    factory = RequestFactory()
    middleware(factory.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9"))
    middleware(factory.get("/", REMOTE_ADDR="203.0.113.1", HTTP_X_FORWARDED_FOR="198.51.100.9"))
    assert seen == ["198.51.100.9", "203.0.113.1"]
    assert audit_context_get().ip is None  # reset after the request


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("10.0.0.0", "10.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("::1", "::1"),
    ],
)
def test_normalized_ip(text: str, expected: str) -> None:
    assert normalized_ip(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3",
        "256.1.1.1",
        " 1.2.3.4",
        "1.2.3.4\x00",
        "1.2.3.4:80",
        "",
        "x",
    ],
)
def test_normalized_ip_refuses_what_ipaddress_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        ipaddress.ip_address(text)
    with pytest.raises(ValueError):
        normalized_ip(text)
