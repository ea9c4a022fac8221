"""splunkd's REST API on one kept-alive connection (splunkrest): the requests
the handler sends, the namespace of the service, a connection splunkd closed
between two requests, a splunkd that stops answering."""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from urllib.parse import urlsplit

import pytest

from ta_auth0 import app_version
from ta_auth0.kvstate import STATE, collections
from ta_auth0.splunkrest import TIMEOUT_SECONDS, KeepAliveHandler, service
from tests.fakes.splunkd import FakeSplunkd, _Handler, _Server

SESSION_KEY = "unit-rest-session-key"


class RecordingSplunkd(FakeSplunkd):
    """The fake splunkd, also keeping each request's headers, and able to
    drop requests unanswered or hang up after an answer (as splunkd does with
    a connection idle too long)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.drop = 0  # the next requests closed without an answer
        self.hang_up = False  # close each connection after answering, unannounced
        self.stall: threading.Event | None = None  # wait on it before answering

    def _handle(self, handler, method: str) -> None:
        self.seen.append((method, handler.path, {k.lower(): v for k, v in handler.headers.items()}))
        if self.drop:
            self.drop -= 1
            handler.close_connection = True
            return
        if self.stall is not None:
            self.stall.wait(3)
        super()._handle(handler, method)
        if self.hang_up:
            handler.close_connection = True


class _PlainHandler(_Handler):
    def setup(self) -> None:  # no TLS handshake
        self.request.settimeout(self.timeout)
        socketserver.StreamRequestHandler.setup(self)


class PlainSplunkd(RecordingSplunkd):
    """The same, over plain HTTP (splunkd with enableSplunkdSSL = false)."""

    def start(self):
        server = _Server(("127.0.0.1", 0), _PlainHandler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.005,), daemon=True)
        self._thread.start()
        return self

    @property
    def server_uri(self) -> str:
        return super().server_uri.replace("https://", "http://")


@pytest.fixture
def splunkd(start_splunkd):
    return start_splunkd(SESSION_KEY, RecordingSplunkd)


def test_requests_name_the_add_on_and_ask_to_keep_the_connection(splunkd):
    handler = KeepAliveHandler()
    svc = service(splunkd.server_uri, SESSION_KEY, handler)
    assert svc.info["kvStoreStatus"] == "ready"
    collections(svc)[STATE].save([{"_key": "k1", "note": "ü-名"}])
    handler.close()
    (get_method, get_path, get), *_, (post_method, post_path, post) = splunkd.seen
    assert (get_method, get_path) == ("GET", "/services/server/info")
    assert get["user-agent"] == f"TA-auth0/{app_version()}"
    assert get["accept"] == "*/*" and get["connection"] == "keep-alive"
    assert get["content-length"] == "0"  # a GET has no body
    assert get["authorization"] == f"Splunk {SESSION_KEY}"
    assert post_method == "POST"
    assert post_path == f"/servicesNS/nobody/TA-auth0/storage/collections/data/{STATE}/batch_save"
    assert post["connection"] == "keep-alive"
    assert [method for method, _, _ in splunkd.seen] == ["GET", "GET", "POST"]  # each sent once, with its body
    assert [d["note"] for d in splunkd.kv_documents(STATE)] == ["ü-名"]
    assert handler.connections == 1


def test_a_query_string_reaches_splunkd(splunkd):
    handler = KeepAliveHandler()
    svc = service(splunkd.server_uri, SESSION_KEY, handler)
    response = svc.get("server/info", output_mode="json")
    assert b'"kvStoreStatus"' in response.body.read()  # JSON: output_mode arrived
    assert splunkd.seen[-1][1] == "/servicesNS/nobody/TA-auth0/server/info?output_mode=json"
    handler.close()


def test_a_message_without_a_method_is_a_get(splunkd):
    handler = KeepAliveHandler()
    url = splunkd.server_uri + "/services/server/info"
    message = {"headers": [("Authorization", f"Splunk {SESSION_KEY}")]}
    splunkd.hang_up = True  # the second one is sent again on a new connection
    for _ in range(2):
        answer = handler(url, message)
        assert answer["status"] == 200 and b"kvStoreStatus" in answer["body"].read()
    assert splunkd.requests == [("GET", "/services/server/info", 200)] * 2
    assert handler.connections == 2
    handler.close()


def test_the_service_is_the_apps_namespace_on_splunkds_default_port():
    svc = service("https://127.0.0.1", SESSION_KEY)
    assert (svc.scheme, svc.host, svc.port) == ("https", "127.0.0.1", 8089)
    assert (svc.namespace["owner"], svc.namespace["app"]) == ("nobody", "TA-auth0")
    assert service("//127.0.0.1:9999", SESSION_KEY).scheme == "https"  # no scheme: https
    assert service("http://127.0.0.1:9999", SESSION_KEY).scheme == "http"


def test_a_connection_splunkd_closed_between_requests_is_reopened_once(splunkd):
    handler = KeepAliveHandler()
    svc = service(splunkd.server_uri, SESSION_KEY, handler)
    splunkd.hang_up = True  # every answer, then the connection is gone
    assert svc.info["kvStoreStatus"] == "ready"
    assert svc.info["kvStoreStatus"] == "ready"
    assert svc.info["kvStoreStatus"] == "ready"
    assert handler.connections == 3
    assert [status for _, _, status in splunkd.requests] == [200, 200, 200]  # each sent once
    kv = collections(svc)
    kv[STATE].save([{"_key": "k1", "n": 1}])
    kv[STATE].save([{"_key": "k2", "n": 2}])  # sent again on a new connection: still a POST, with its body
    assert sorted(d["n"] for d in splunkd.kv_documents(STATE)) == [1, 2]
    assert [m for m, _, _ in splunkd.requests[-2:]] == ["POST", "POST"]
    handler.close()


def test_a_new_connection_that_fails_is_not_retried(splunkd):
    handler = KeepAliveHandler()
    svc = service(splunkd.server_uri, SESSION_KEY, handler)
    splunkd.drop = 1
    with pytest.raises(http.client.RemoteDisconnected):
        svc.info  # noqa: B018
    assert len(splunkd.seen) == 1 and handler.connections == 1
    handler.close()


def test_another_splunkd_gets_its_own_connection(server_context, splunkd):
    handler = KeepAliveHandler()
    assert service(splunkd.server_uri, SESSION_KEY, handler).info["kvStoreStatus"] == "ready"
    with RecordingSplunkd(server_context, session_key=SESSION_KEY) as other:
        other.kvstore_status = "starting"
        assert service(other.server_uri, SESSION_KEY, handler).info["kvStoreStatus"] == "starting"
        assert handler.connections == 2 and len(other.seen) == 1
        with RecordingSplunkd(server_context, session_key=SESSION_KEY) as third:
            third.drop = 1  # a first request to a new splunkd that fails: raised, not retried
            with pytest.raises(http.client.RemoteDisconnected):
                service(third.server_uri, SESSION_KEY, handler).info  # noqa: B018
            assert len(third.seen) == 1
    assert len(splunkd.seen) == 1
    handler.close()


def test_plain_http_splunkd_is_reached_over_one_connection(server_context):
    with PlainSplunkd(server_context, session_key=SESSION_KEY) as plain:
        handler = KeepAliveHandler(timeout=0.2)
        svc = service(plain.server_uri, SESSION_KEY, handler)
        assert svc.info["kvStoreStatus"] == "ready"
        assert svc.info["kvStoreStatus"] == "ready"
        assert handler.connections == 1 and len(plain.seen) == 2
        assert urlsplit(plain.server_uri).port == handler._origin[2]
        plain.stall = threading.Event()
        with pytest.raises(socket.timeout):  # a splunkd that stops answering: the handler's timeout
            svc.info  # noqa: B018
        plain.stall.set()
        handler.close()


def test_a_splunkd_that_stops_answering_times_out(splunkd):
    assert KeepAliveHandler().timeout == TIMEOUT_SECONDS == 60.0
    handler = KeepAliveHandler(timeout=0.2)
    svc = service(splunkd.server_uri, SESSION_KEY, handler)
    splunkd.stall = threading.Event()
    with pytest.raises(socket.timeout):
        svc.info  # noqa: B018
    splunkd.stall.set()
    handler.close()
