"""The HTTPS road to Auth0: one pooled connection, under auth0-python's RestClient.

auth0-python builds every request (URL, query, headers, telemetry, JSON)
and turns every answer into content or a typed Auth0Error; that stays. Two
things are done here instead, and only here:

* Sending. The library calls `requests.request()` per call: a new TCP and
  TLS connection each time. requests' own Session costs, per request, about
  0.4 times what a bare standard-library client spends on a whole page
  (preparing and merging settings, reading the body in 10 KiB chunks through
  four layers; measured with `make bench`). So `Transport` sends through
  urllib3, the engine requests itself drives: one keep-alive connection per
  run, verified TLS, the proxy, timeouts, no retries of its own (Auth0Client
  paces and retries). The answer is handed to the library's parsers in the
  shape they read (`status_code`, `headers`, `text`), as auth0-python's own
  async client does for aiohttp (`auth0.rest_async.RequestsResponse`).
* Parsing a page of logs. A JSON array becomes a `LogPage`; with
  `keep_raw` (collect = all) it also keeps each log's own JSON text, so the
  event carries the log byte for byte as Auth0 sent it.

Settings requests would take from the environment are read once per run, as
requests reads them: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (else certifi's
bundle), and HTTPS_PROXY / NO_PROXY when `proxy_url` is not set.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, List, Mapping, Optional
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
from auth0.rest import JsonResponse, RestClient, RestClientOptions
from urllib3._collections import HTTPHeaderDict  # urllib3 1.26 exports it only there

TIMEOUT = (10.0, 60.0)  # connect, read (seconds)


class LogPage(list):
    """A page of logs as dicts; with `keep_raw`, also each log's own JSON text
    in `raws` (same order): what `collect = all` writes, byte for byte."""

    def __init__(self, logs: Any = (), raws: Optional[List[str]] = None) -> None:
        super().__init__(logs)
        self.raws = raws

    def raw(self, index: int) -> str:
        """The log's text as Auth0 sent it (re-encoded if it was not kept)."""
        if self.raws is not None:
            return self.raws[index]
        return json.dumps(self[index], ensure_ascii=False, separators=(",", ":"))

    def only(self, index: int) -> LogPage:
        """A page of just this page's log number `index`."""
        return LogPage([self[index]], None if self.raws is None else [self.raws[index]])


_JSON = json.JSONDecoder()
_BLANK = re.compile(r"[ \t\n\r]*")


def parse_log_page(text: str) -> Any:
    """A JSON array of logs kept with each element's exact text; anything
    else (an error object, search mode with totals) parsed as plain JSON.

    json's raw_decode gives each element's end, so the page is parsed once,
    by the C scanner, and the text of each log is a slice of the answer."""
    skip = _BLANK.match
    position = skip(text).end()
    if text[position : position + 1] != "[":
        return json.loads(text)
    page = LogPage(raws=[])
    position = skip(text, position + 1).end()
    if text[position : position + 1] == "]":
        closing = position
    else:
        while True:
            value, end = _JSON.raw_decode(text, position)
            page.append(value)
            page.raws.append(text[position:end])
            position = skip(text, end).end()
            separator = text[position : position + 1]
            if separator == "]":
                closing = position
                break
            if separator != ",":
                raise ValueError(f"expected , or ] at {position} in the log page")
            position = skip(text, position + 1).end()
    if skip(text, closing + 1).end() != len(text):
        raise ValueError("unexpected text after the log page")
    return page


class Answer:
    """An HTTP answer in the shape auth0-python's parsers read."""

    def __init__(self, status_code: int, headers: Mapping[str, str], text: str) -> None:
        self.status_code = status_code
        self.headers = headers  # case-insensitive (urllib3's HTTPHeaderDict)
        self.text = text


class _LogPageResponse(JsonResponse):
    """auth0-python's JSON response for a JSON array: a LogPage."""

    def __init__(self, answer: Answer, keep_raw: bool) -> None:
        content = parse_log_page(answer.text) if keep_raw else LogPage(json.loads(answer.text))
        # JsonResponse.__init__ would parse the text again: skip to Response's.
        super(JsonResponse, self).__init__(answer.status_code, content, answer.headers)


class Transport:
    """One keep-alive HTTPS connection to the tenant (through the proxy, if any)."""

    def __init__(self, domain: str, proxy_url: Optional[str]) -> None:
        self.domain = domain
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or _certifi_bundle()
        options = dict(
            num_pools=1,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,
            timeout=urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1]),
            retries=False,
        )
        proxy = proxy_url or _environment_proxy(domain)
        if proxy:
            parts = urlsplit(proxy)
            headers = {}
            if parts.username or parts.password:
                credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
                headers = urllib3.util.make_headers(proxy_basic_auth=credentials)
            plain = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            self.pool: urllib3.PoolManager = urllib3.ProxyManager(plain, proxy_headers=headers, **options)
        else:
            self.pool = urllib3.PoolManager(**options)
        self.last_answer: Optional[Answer] = None

    def send(self, method: str, url: str, body: Optional[bytes], headers: Mapping[str, str]) -> Answer:
        """One request; raises urllib3's errors as they come (Auth0Client sorts them)."""
        self.last_answer = None
        response = self.pool.request(
            method, url, body=body, headers=dict(headers), redirect=False, retries=False, preload_content=True
        )
        answer = Answer(response.status, response.headers, response.data.decode(_charset(response.headers), "replace"))
        self.last_answer = answer
        return answer

    def close(self) -> None:
        self.pool.clear()


class PooledRestClient(RestClient):
    """auth0-python's RestClient, sending through the run's Transport."""

    def __init__(self, transport: Transport, jwt: Optional[str], user_agent: str, keep_raw: bool) -> None:
        super().__init__(jwt, options=RestClientOptions(telemetry=True, timeout=TIMEOUT, retries=0))
        self.base_headers["User-Agent"] = user_agent
        self._transport = transport
        self._keep_raw = keep_raw

    @property
    def last_answer(self) -> Optional[Answer]:
        return self._transport.last_answer

    def _request(self, method, url, params=None, data=None, json=None, headers=None, files=None):
        # What requests did for the library: the query from `params` (None
        # values left out), a JSON or form body.
        headers = dict(headers or {})
        if data is None and json is not None and "x-www-form-urlencoded" in headers.get("Content-Type", "").lower():
            data, json = urlencode(json), None  # as the library's own _request does
        query = [(key, value) for key, value in (params or {}).items() if value is not None]
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query, doseq=True)
        if json is not None:
            body: Optional[bytes] = _json_bytes(json)
            headers.setdefault("Content-Type", "application/json")
        else:
            body = data.encode("utf-8") if isinstance(data, str) else data
        return self._process_response(self._transport.send(method, url, body, headers))

    def _parse(self, response: Answer):
        if response.status_code == 429 and not _whole_number(response.headers.get("x-ratelimit-reset", "-1")):
            # auth0-python reads a 429's Reset with int() and raises a bare
            # ValueError on anything else (a fraction, a proxy's rewrite); the
            # pacer reads the headers itself (last_answer), so the library
            # gets the answer without that one.
            headers = HTTPHeaderDict(response.headers)
            del headers["x-ratelimit-reset"]
            response = Answer(response.status_code, headers, response.text)
        if response.status_code < 400 and response.text.lstrip()[:1] == "[":
            try:
                return _LogPageResponse(response, self._keep_raw)
            except ValueError:
                pass  # not JSON after all: plain text, as the library parses it
        return super()._parse(response)


def _whole_number(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _charset(headers: Mapping[str, str]) -> str:
    match = re.search(r"charset=([\w.-]+)", headers.get("content-type", ""), re.I)
    return match.group(1) if match else "utf-8"  # JSON is UTF-8 (RFC 8259)


def _certifi_bundle() -> str:
    import certifi

    return certifi.where()


def _environment_proxy(domain: str) -> Optional[str]:
    """The proxy the environment names for https://domain/, as requests would
    pick it (HTTPS_PROXY / ALL_PROXY, unless NO_PROXY covers the host)."""
    from requests.utils import get_environ_proxies

    proxies = get_environ_proxies(f"https://{domain}/")
    return proxies.get("https") or proxies.get("all")
