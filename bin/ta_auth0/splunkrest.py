"""splunkd's REST API through splunklib, on one kept-alive connection.

splunklib 2.1.1's default HTTP handler opens a new TLS connection for every
request and sends `Connection: Close`. The KV store state costs about six
requests per page of logs, so a backfill of 100 000 logs would pay some
6 000 TLS handshakes; this handler (splunklib's documented `handler`
hook: `handler(url, message) -> {status, reason, headers, body}`) keeps one
connection to splunkd open for the run instead. Like splunklib's default
handler it does not verify splunkd's certificate: the modular input talks
to its own splunkd, whose certificate is usually self-signed, with the
session key splunkd gave it.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
from typing import Any, Optional
from urllib.parse import urlsplit

from splunklib import client

from . import APP_NAME, app_version

TIMEOUT_SECONDS = 60.0
_STALE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError, ConnectionResetError)


class KeepAliveHandler:
    """A splunklib handler holding one HTTP(S) connection to one splunkd."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._connection: Optional[http.client.HTTPConnection] = None
        self._origin: Optional[tuple] = None
        self.connections = 0

    def __call__(self, url: str, message: dict[str, Any], **_: Any) -> dict[str, Any]:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = message.get("body") or b""
        if isinstance(body, str):  # http.client would encode text as Latin-1: JSON is UTF-8
            body = body.encode("utf-8")
        headers = {"User-Agent": f"TA-auth0/{app_version()}", "Accept": "*/*", "Connection": "keep-alive"}
        headers.update(dict(message.get("headers") or []))
        headers["Content-Length"] = str(len(body))
        reused = self._connection is not None and self._origin == origin
        try:
            response = self._send(origin, message.get("method", "GET"), path, body, headers)
        except _STALE:
            if not reused:
                raise
            # splunkd closed the idle connection between two requests: once more on a new one.
            self.close()
            response = self._send(origin, message.get("method", "GET"), path, body, headers)
        payload = response.read()
        if (response.getheader("Connection") or "").lower() == "close":
            self.close()
        return {
            "status": response.status,
            "reason": response.reason,
            "headers": response.getheaders(),
            "body": io.BytesIO(payload),
        }

    def _send(self, origin: tuple, method: str, path: str, body, headers: dict[str, str]):
        if self._connection is None or self._origin != origin:
            self.close()
            scheme, host, port = origin
            if scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    host,
                    port,
                    timeout=self.timeout,
                    context=ssl._create_unverified_context(),
                )
            else:
                self._connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._origin = origin
            self.connections += 1
            self._connection.connect()
            # Small requests, one after the other: never held back by Nagle.
            self._connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connection.request(method, path, body, headers)
        return self._connection.getresponse()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._origin = None, None


def service(server_uri: str, session_key: str, handler: Optional[KeepAliveHandler] = None):
    """splunklib's Service in the app's namespace (owner nobody, app TA-auth0):
    the SDK's default service has no namespace."""
    parts = urlsplit(server_uri or "")
    return client.Service(
        scheme=parts.scheme or "https",
        host=parts.hostname,
        port=parts.port or 8089,
        token=session_key,
        owner="nobody",
        app=APP_NAME,
        handler=handler,
    )
