"""A SIEM stand-in for the log stream tests: an HTTPS server on 127.0.0.1 that checks each
request's signature the way the README tells receivers to, records the events it
accepted, and can be made to fail (HTTP 500, hanging past the sender's timeout, resetting
the connection, being stopped and started again on the same port)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1 and its key, made with the openssl command."""
    cert, key = directory / "receiver.crt", directory / "receiver.key"
    subprocess.run(
        [
            shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    """The README's receiver-side check: the signature over "<timestamp>.<body>", and a
    timestamp within ``tolerance`` seconds of now (a replayed request is refused)."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest("v1=" + expected.hexdigest(), signature)


@dataclass
class Delivery:
    stream: str
    events: list[dict[str, Any]]
    body: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when it was accepted


@dataclass
class Receiver:
    """Secrets by stream id (the ``X-Audit-Stream`` header); ``mode`` is what the next
        requests get: ``ok``, ``500``, ``302``, ``hang`` (no answer for ``hang_seconds``, then
    an answer as in ``ok``) or ``reset``."""

    cert: Path
    key: Path
    secrets: dict[str, str] = field(default_factory=dict)
    mode: str = "ok"
    hang_seconds: float = 2.0
    # Each accepted request takes this long, so that overlapping deliveries would show.
    delay: float = 0.0
    max_in_flight: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)  # requests per mode
    # Streams whose requests hang (``hang_seconds``) whatever the mode.
    hanging: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)
    forged: int = 0
    requests: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/ingest"

    def events(self, stream: str | int) -> list[dict[str, Any]]:
        with self.lock:
            return [e for d in self.deliveries if d.stream == str(stream) for e in d.events]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The status line and the body are two writes: without this, the second waits
            # for the sender's delayed ACK of the first (40 ms on Linux).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests += 1
                    mode = receiver.mode
                    receiver.answered[mode] = receiver.answered.get(mode, 0) + 1
                if mode == "reset":
                    # An RST instead of an answer.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                if mode == "hang" or self.headers.get("X-Audit-Stream", "") in receiver.hanging:
                    time.sleep(receiver.hang_seconds)
                if mode == "500":
                    self._answer(500, b"down for maintenance")
                    return
                if mode == "302":
                    self.send_response(302)
                    self.send_header("Location", "https://127.0.0.1:1/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                stream = self.headers.get("X-Audit-Stream", "")
                secret = receiver.secrets.get(stream)
                signature = self.headers.get("X-Audit-Signature", "")
                timestamp = self.headers.get("X-Audit-Timestamp", "0")
                if secret is None or not verify(secret, timestamp, body, signature):
                    with receiver.lock:
                        receiver.forged += 1
                    self._answer(401, b"bad signature")
                    return
                events = _events(body, self.headers.get("Content-Type", ""))
                with receiver.lock:
                    receiver.in_flight[stream] = receiver.in_flight.get(stream, 0) + 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight[stream])
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.in_flight[stream] -= 1
                    receiver.deliveries.append(
                        Delivery(stream, events, body, {k: v for k, v in self.headers.items()})
                    )
                self._answer(200, b"ok")

            def _answer(self, status: int, text: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _events(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The events of a request in any of the three formats."""
    text = body.decode()
    if content_type == "application/json":
        return list(json.loads(text)["events"])
    # JSON lines, and Splunk HEC's event objects, one per line.
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row["event"] if "sourcetype" in row else row for row in rows]


@contextmanager
def running_receiver(directory: Path, **options: Any) -> Iterator[Receiver]:
    cert, key = self_signed_certificate(directory)
    receiver = Receiver(cert=cert, key=key, **options)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
