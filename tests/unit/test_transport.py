"""The road to Auth0: a log page parsed keeping each log's own text, the
charset of an answer, what a log read's answer may hold, Retry-After, the
short cause of a connection failure; and the HTTPS itself against the fake
tenant: one kept-alive connection, the CA bundle and the proxy taken as
requests would take them, the request as Auth0 receives it."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from ta_auth0.auth0_api import Auth0Client, Auth0Unavailable, MemoryTokenCache, _as_page, _reason, _retry_after
from ta_auth0.transport import LogPage, PooledRestClient, Transport, _charset, _json_bytes, parse_log_page
from tests.fakes.certs import make_test_ca
from tests.fakes.proxy import FakeProxy
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, add_test_clients
from tests.fakes.tenant import FakeTenant
from tests.unit.test_auth0_api import request_log

# Two logs as Auth0 might lay them out (pretty-printed, odd spacing, non-ASCII).
PRETTY = """ \r\n[\n  {"log_id": "90020261120000000000000000000000000000000000000000000001",
   "type": "s", "date": "2026-11-20T10:11:12.345Z", "user_name": "Zo\\u00eb", "n": 1.50},\t
  {"log_id":"90020261120000000000000000000000000000000000000000000002","type":"f","details":{"a":[1, 2]}}
]\n """


def test_a_log_page_keeps_each_logs_own_text():
    page = parse_log_page(PRETTY)
    assert isinstance(page, LogPage) and list(page) == json.loads(PRETTY)
    assert page.raws == [
        '{"log_id": "90020261120000000000000000000000000000000000000000000001",\n'
        '   "type": "s", "date": "2026-11-20T10:11:12.345Z", "user_name": "Zo\\u00eb", "n": 1.50}',
        '{"log_id":"90020261120000000000000000000000000000000000000000000002","type":"f","details":{"a":[1, 2]}}',
    ]
    assert page.raw(1) == page.raws[1] and page.only(1).raws == [page.raws[1]] and page.only(1) == [page[1]]


def test_a_compact_log_page_keeps_each_logs_own_text():
    page = parse_log_page('[{"log_id":"1"},{"log_id":"2"},[3]]')
    assert page == [{"log_id": "1"}, {"log_id": "2"}, [3]] and page.raws == ['{"log_id":"1"}', '{"log_id":"2"}', "[3]"]


@pytest.mark.parametrize("text", ["[]", " [ ] ", "\n[\r\n]\t", "[ ]\n"])
def test_an_empty_page_is_an_empty_log_page(text):
    page = parse_log_page(text)
    assert isinstance(page, LogPage) and page == [] and page.raws == []


def test_anything_but_an_array_is_plain_json():
    error = ' {"statusCode": 400, "error": "Bad Request", "message": "Invalid from"}'
    assert parse_log_page(error) == json.loads(error)
    totals = '{"start": 0, "limit": 1, "length": 0, "total": 0, "logs": []}'
    assert parse_log_page(totals) == json.loads(totals)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[{} {}]", "expected , or ] at 4 in the log page"),
        ('[{"a": 1}] trailing', "unexpected text after the log page"),
        ("[{}][]", "unexpected text after the log page"),
        ("[{}]x", "unexpected text after the log page"),
    ],
)
def test_a_broken_page_is_an_error_not_a_guess(text, message):
    with pytest.raises(ValueError, match=message):
        parse_log_page(text)
    with pytest.raises(ValueError):
        parse_log_page("[{},")


def test_a_log_without_its_text_is_re_encoded_compact_and_unescaped():
    page = LogPage([{"user_name": "Zoë", "n": [1, 2]}])
    assert page.raw(0) == '{"user_name":"Zoë","n":[1,2]}'
    assert page.only(0).raws is None


def test_the_charset_of_an_answer():
    assert _charset({"content-type": "application/json; charset=ISO-8859-1"}) == "ISO-8859-1"
    assert _charset({"content-type": "application/json; CHARSET=utf-16"}) == "utf-16"
    assert _charset({"content-type": "application/json"}) == "utf-8"
    assert _charset({}) == "utf-8"


def test_a_request_body_is_compact_json():
    assert (
        _json_bytes({"app_metadata": {"signedUp": True}, "n": "é"})
        == b'{"app_metadata":{"signedUp":true},"n":"\\u00e9"}'
    )


def test_a_log_read_keeps_only_the_logs_that_are_objects():
    raws = ['{"log_id":"1"}', "5", '{"log_id":"2"}', '"x"']
    page = _as_page(LogPage([{"log_id": "1"}, 5, {"log_id": "2"}, "x"], raws))
    assert page == [{"log_id": "1"}, {"log_id": "2"}] and page.raws == ['{"log_id":"1"}', '{"log_id":"2"}']
    assert _as_page([{"log_id": "3"}, None]) == [{"log_id": "3"}] and _as_page([None]).raws is None
    assert _as_page({"total": 1, "logs": [{"log_id": "4"}]}) == [{"log_id": "4"}]
    assert _as_page({"total": 0}) == []
    whole = LogPage([{"log_id": "5"}], ['{"log_id":"5"}'])
    assert _as_page(whole) is whole


@pytest.mark.parametrize("odd", ["text", 7, None])
def test_a_log_read_that_is_no_list_is_an_error(odd):
    with pytest.raises(Auth0Unavailable, match=f"Auth0 answered a log read with {type(odd).__name__}, not a list"):
        _as_page(odd)


@pytest.mark.parametrize(
    "headers, seconds",
    [({"retry-after": "7"}, 7.0), ({"retry-after": "0"}, 1.0), ({"retry-after": "soon"}, 0.0), ({}, 0.0), (None, 0.0)],
)
def test_retry_after_when_auth0_sends_it(headers, seconds):
    assert _retry_after(headers) == seconds


@pytest.mark.parametrize(
    "text, short",
    [
        (
            "HTTPSConnectionPool(host='x', port=443): Max retries exceeded (Caused by SSLError("
            "SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "self-signed certificate in certificate chain (_ssl.c:1000)')))",
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain",
        ),
        ("<urllib3...>: Failed to resolve 'x' ([Errno -2] Name or service not known)", "Name or service not known"),
        ("NewConnectionError: [Errno 111] Connection refused", "Connection refused"),
        ("Read timed out. (read timeout=30)", "timed out"),
        ("x" * 300, "x" * 200),
    ],
)
def test_the_cause_of_a_connection_failure_is_short(text, short):
    assert _reason(Exception(text)) == short


# -- over HTTPS, against the fake tenant -----------------------------------------

ENVIRONMENT = ("CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def tenant(ca, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca.ca_bundle_path)
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with FakeTenant(ca=ca) as fake:
        add_test_clients(fake)
        yield fake


@pytest.fixture
def connect(tenant):
    made = []

    def make(**options):
        api = Auth0Client(
            domain=tenant.domain,
            client_id=MAIN_CLIENT_ID,
            secret=lambda: MAIN_CLIENT_SECRET,
            token_cache=MemoryTokenCache(),
            deadline=time.monotonic() + 60,
            **options,
        )
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


def test_a_run_talks_to_auth0_over_one_kept_alive_connection(tenant, connect):
    tenant.add_user("auth0|u")
    api = connect()
    api.newest_log()
    api.user_flag("auth0|u", "signedUp")
    api.set_user_flag("auth0|u", "signedUp")
    api.logs_after("0")
    assert sum(tenant.calls.values()) == 5 and tenant.connections == 1


def test_auth0_sees_the_add_ons_user_agent_on_every_call(tenant, connect):
    tenant.add_user("auth0|u")
    connect(user_agent="TA-auth0/9.8.7").set_user_flag("auth0|u", "signedUp")
    token_log, write_log = tenant.logs  # Auth0 logs the token exchange and the write
    assert (token_log["type"], write_log["type"]) == ("seccft", "sapi")
    assert token_log["user_agent"] == write_log["user_agent"] == "TA-auth0/9.8.7"


def test_a_request_carries_only_the_query_parameters_that_have_values(tenant, connect):
    tenant.add_user("auth0|u")
    api = connect()
    api.logs_after("900123")
    api.user_flag("auth0|u", "signedUp")
    logs, user = (
        dict(parse_qsl(urlsplit(record.path).query, keep_blank_values=True)) for record in request_log(tenant)[1:]
    )
    assert logs["from"] == "900123" and logs["take"] == "100"
    assert not {"q", "sort", "fields"} & set(logs)  # what the library leaves as None is not sent
    assert user == {"fields": "user_id,app_metadata", "include_fields": "true"}


def test_a_form_post_is_sent_as_a_form(tenant):
    transport = Transport(tenant.domain, None)
    try:
        rest = PooledRestClient(transport, None, "TA-auth0/test", False)
        answer = rest.post(
            f"https://{tenant.domain}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": MAIN_CLIENT_ID,
                "client_secret": MAIN_CLIENT_SECRET,
                "audience": tenant.audience,
            },
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    finally:
        transport.close()
    assert answer["access_token"] in tenant.issued_token_values


def test_a_redirect_is_not_followed(tenant, connect):
    tenant.fail_next("logs", 302, headers={"Location": f"https://{tenant.domain}/api/v2/logs?from=1&take=1"})
    connect().logs_after("0")
    assert len([record for record in request_log(tenant) if record.group == "logs"]) == 1


def test_an_answer_is_decoded_in_its_charset_and_bad_bytes_do_not_stop_the_run(tenant, connect):
    api = connect()
    latin = json.dumps({"user_id": "auth0|u", "app_metadata": {"name": "Zoë"}}, ensure_ascii=False)
    tenant.fail_next(
        "users_read",
        200,
        body=latin.encode("latin-1"),
        headers={"Content-Type": "application/json; charset=ISO-8859-1"},
    )
    assert api.user_flag("auth0|u", "name") == "Zoë"
    tenant.fail_next(
        "users_read", 200, body=b'{"app_metadata": {"name": "Zo\xeb"}}', headers={"Content-Type": "application/json"}
    )
    assert api.user_flag("auth0|u", "name") == "Zo\ufffd"


def test_a_log_page_after_blank_lines_keeps_each_logs_text(tenant, connect):
    tenant.fail_next("logs", 200, body=' \n [{"log_id": "1"}]')
    page = connect(keep_raw=True).logs_after("0")
    assert page == [{"log_id": "1"}] and page.raws == ['{"log_id": "1"}']


def test_the_ca_bundle_comes_from_requests_ca_bundle_then_curl_ca_bundle(tenant, connect, monkeypatch, tmp_path):
    other = make_test_ca(tmp_path).ca_bundle_path  # a CA that did not sign the tenant's certificate
    monkeypatch.setenv("CURL_CA_BUNDLE", other)
    connect().token()  # REQUESTS_CA_BUNDLE first
    monkeypatch.setenv("CURL_CA_BUNDLE", tenant.ca_bundle)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    connect().token()  # else CURL_CA_BUNDLE
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other)
    with pytest.raises(Auth0Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        connect().token()
    assert tenant.tokens_issued == 2


@pytest.fixture(scope="module")
def started_proxy():
    with FakeProxy("proxy user", "p@ss:w%rd") as proxy:
        yield proxy


@pytest.fixture
def proxy(started_proxy):
    started_proxy.tunnels.clear()
    started_proxy.refused = 0
    return started_proxy


# The credentials, as an admin writes them in a URL (percent-encoded).
PROXY_CREDENTIALS = "proxy%20user:p%40ss%3Aw%25rd"


def test_a_proxy_with_credentials_tunnels_to_auth0(tenant, connect, proxy):
    connect(proxy_url=f"http://{PROXY_CREDENTIALS}@127.0.0.1:{proxy.port}").token()
    assert proxy.tunnels == [tenant.domain] and proxy.refused == 0
    with pytest.raises(Auth0Unavailable) as caught:
        connect(proxy_url=proxy.url("proxy user", "wrong"), retries=0).token()
    assert str(caught.value).startswith(f"proxy error reaching {tenant.domain}: ")
    assert "407 Proxy Authentication Required" in str(caught.value)
    assert proxy.refused == 1 and tenant.tokens_issued == 1


def test_a_proxy_user_without_a_password_is_sent_as_such(tenant, connect):
    with FakeProxy("proxy user", "") as proxy:
        connect(proxy_url=f"http://proxy%20user@127.0.0.1:{proxy.port}", retries=0).token()
        assert proxy.tunnels == [tenant.domain] and proxy.refused == 0


def test_the_environments_proxy_is_used_unless_no_proxy_covers_the_host(tenant, connect, monkeypatch, proxy):
    for variable in ("HTTPS_PROXY", "ALL_PROXY"):
        proxy.tunnels.clear()
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setenv(variable, f"http://{PROXY_CREDENTIALS}@127.0.0.1:{proxy.port}")
        connect().token()
        assert proxy.tunnels == [tenant.domain]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        connect().token()
        assert proxy.tunnels == [tenant.domain]
        monkeypatch.delenv(variable)
    assert tenant.tokens_issued == 4 and proxy.refused == 0


def test_the_inputs_proxy_url_wins_over_the_environments(tenant, connect, monkeypatch, proxy):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{probe.getsockname()[1]}")  # nothing listens there
    connect(proxy_url=f"http://{PROXY_CREDENTIALS}@127.0.0.1:{proxy.port}").token()
    assert proxy.tunnels == [tenant.domain]
