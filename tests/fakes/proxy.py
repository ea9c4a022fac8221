"""A minimal HTTP CONNECT proxy on 127.0.0.1, for the `proxy_url` tests.

It tunnels TLS to 127.0.0.1 targets only, checks Basic proxy credentials
when given some, and counts the tunnels it opened.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from typing import Optional


class FakeProxy:
    def __init__(self, username: Optional[str] = None, password: Optional[str] = None) -> None:
        self.expected_auth = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
        )
        self.tunnels: list[str] = []
        self.refused = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.connection, self.rfile)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.005,), daemon=True)

    def url(self, username: Optional[str] = None, password: Optional[str] = None) -> str:
        credentials = f"{username}:{password}@" if username else ""
        return f"http://{credentials}127.0.0.1:{self.port}"

    def __enter__(self) -> FakeProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, client: socket.socket, rfile) -> None:
        request = rfile.readline().decode("latin-1").split()
        headers = {}
        while True:
            line = rfile.readline().decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(request) < 2 or request[0] != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = request[1].rpartition(":")
        if self.expected_auth and headers.get("proxy-authorization") != self.expected_auth:
            with self._lock:
                self.refused += 1
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        if host not in ("127.0.0.1", "localhost"):  # tests never leave this machine
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        with self._lock:
            self.tunnels.append(request[1])
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [client, upstream]
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        finally:
            upstream.close()
