"""The pure parts of the Auth0 side: a log page parsed keeping each log's own
text, the charset of an answer, what a log read's answer may hold, Retry-After,
and the short cause of a connection failure. The HTTP itself is the
end-to-end tests' (the real client against the fake tenant)."""

from __future__ import annotations

import json

import pytest

from ta_auth0.auth0_api import Auth0Unavailable, _as_page, _reason, _retry_after
from ta_auth0.transport import LogPage, _charset, _json_bytes, parse_log_page

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
