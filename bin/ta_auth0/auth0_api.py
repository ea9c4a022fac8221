"""Every call to Auth0: token, log pages, user flag read and write.

Built on auth0-python 4.13 (GetToken, Logs, Users) for request building and
error parsing, over transport.py (one pooled connection, and what the
library does not do well enough for a collector: see there). It retries a
429 at most a second later, ignoring `X-RateLimit-Reset`: we turn its
retries off and pace ourselves on Auth0's rate-limit headers (pacing.py).

Errors are typed (Auth0AuthError, Auth0ScopeError, RateLimited,
Auth0Unavailable, CheckpointExpired, UserNotFound, Auth0RequestError) and
their messages never contain the secret or a token.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, TypeVar
from urllib.parse import quote

from auth0.exceptions import Auth0Error as LibraryError
from auth0.management import Logs, Users
from urllib3 import exceptions as http_errors

from .config import ENDPOINT_SCOPES
from .pacing import Pacer, read_limits
from .state import CachedToken
from .transport import Answer, LogPage, PooledRestClient, Transport

log = logging.getLogger("ta_auth0")
T = TypeVar("T")

PAGE_SIZE = 100  # Auth0's maximum `take` in checkpoint mode
# A Management API token lives 24 h by default; Auth0 rate-limits
# /oauth/token and logs every token it issues, so a token is reused across
# runs until it is this close to expiry (more than a run's time budget).
TOKEN_RENEW_MARGIN = 30 * 60
MAX_RETRIES = 4  # for 5xx, timeouts and dropped connections: 1+2+4+8 s of backoff
BACKOFF_CAP = 60.0
MAX_WAIT = 300.0  # the longest single rate-limit wait before giving up the run


class Auth0ApiError(Exception):
    """Base of every error this module raises."""


class Auth0AuthError(Auth0ApiError):
    """Auth0 refused the credentials, or the application's access."""


class Auth0ScopeError(Auth0ApiError):
    """The token lacks a scope the call needs."""

    def __init__(self, message: str, scope: Optional[str]) -> None:
        super().__init__(message)
        self.scope = scope


class RateLimited(Auth0ApiError):
    """Still rate-limited when the run's time budget was spent."""


class Auth0Unavailable(Auth0ApiError):
    """Auth0 unreachable or failing (5xx, timeout, TLS, DNS) after retries."""


class CheckpointExpired(Auth0ApiError):
    """Auth0 answered 400 to a `from=<log_id>` read."""


class UserNotFound(Auth0ApiError):
    """404 for a user (deleted since the log was written)."""


class Auth0RequestError(Auth0ApiError):
    """Any other 4xx; carries the status and Auth0's error code."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class ApiStats:
    calls: int = 0
    rate_limited: int = 0
    tokens_requested: int = 0
    retries: int = 0


class TokenCache(Protocol):
    """Where a token is kept between runs: the input's StateStore."""

    def token(self) -> Optional[CachedToken]: ...

    def save_token(self, token: Optional[CachedToken]) -> None: ...


class MemoryTokenCache:
    """A token kept for one process only: argument validation has no state."""

    def __init__(self) -> None:
        self._token: Optional[CachedToken] = None

    def token(self) -> Optional[CachedToken]:
        return self._token

    def save_token(self, token: Optional[CachedToken]) -> None:
        self._token = token


@dataclass
class Auth0Client:
    """One run's connection to a tenant: one connection, one token, paced calls.

    secret: gives the client secret when a token must be requested (an idle
    run with a cached token never needs it, nor the credential store).
    deadline: time.monotonic() value after which no wait starts; calls that
    would have to wait past it raise RateLimited / Auth0Unavailable so the
    run can end cleanly and continue next interval from its checkpoint.
    idle_work: called while a call waits for its rate-limit bucket; it may
    send one call of another kind that can go now (a flag write while log
    reads wait): it returns 0 if it did, else the seconds until it might.
    """

    domain: str
    client_id: str
    secret: Callable[[], str] = field(repr=False)
    token_cache: TokenCache = field(repr=False)
    deadline: float
    proxy_url: Optional[str] = field(default=None, repr=False)
    user_agent: str = "TA-auth0"
    retries: int = MAX_RETRIES  # for 5xx and network errors; validation uses 0
    stats: ApiStats = field(default_factory=ApiStats)
    idle_work: Optional[Callable[[], float]] = field(default=None, repr=False)
    keep_raw: bool = False  # keep each log's own JSON text (collect = all)

    def __post_init__(self) -> None:
        self.transport = Transport(self.domain, self.proxy_url)
        self.pacer = Pacer(time.time)
        self._token: Optional[CachedToken] = None
        self._refreshed = False
        self._rest: Optional[PooledRestClient] = None
        self._in_idle_work = False

    def close(self) -> None:
        self.transport.close()

    def wait_for(self, kind: str) -> float:
        """Seconds before a call of this kind ("logs", "users_read", "users_write") may go."""
        return self.pacer.wait(kind)

    def shares_bucket(self, kind: str, other: str) -> bool:
        return self.pacer.shares(kind, other)

    # -- token -----------------------------------------------------------------
    @property
    def audience(self) -> str:
        return f"https://{self.domain}/api/v2/"

    def token(self) -> CachedToken:
        """The cached token if it is this client's and not near expiry, else a new one."""
        if self._token is None:
            cached = self.token_cache.token()
            if cached and cached.client_id == self.client_id and cached.expires_at - time.time() > TOKEN_RENEW_MARGIN:
                self._token = cached
            else:
                self._token = self._request_token()
        return self._token

    def granted_scopes(self) -> Optional[set[str]]:
        """The scopes Auth0 granted with the token, None if it did not say."""
        scope = self.token().scope
        return set(scope.split()) if scope else None

    def _request_token(self) -> CachedToken:
        # Imported here: it brings pyjwt, which a run with a cached token never needs.
        from auth0.authentication import GetToken

        client = GetToken(self.domain, self.client_id, client_secret=self.secret())
        client.client = self._rest_client(None)  # the same pooled connection
        self.stats.tokens_requested += 1
        try:
            answer = self._call("token", lambda: client.client_credentials(audience=self.audience), client.client)
        except Auth0RequestError as exc:
            raise self._token_error(exc) from None
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise Auth0Unavailable(f"Auth0 at {self.domain} answered the token request without an access token")
        lifetime = float(answer.get("expires_in") or 86400)
        token = CachedToken(answer["access_token"], time.time() + lifetime, self.client_id, answer.get("scope") or "")
        self.token_cache.save_token(token)
        return token

    def _token_error(self, exc: Auth0RequestError) -> Auth0ApiError:
        """/oauth/token answers 401 for a wrong id or secret and 403 when the
        application may not use the Management API (or the audience is not
        served on this domain)."""
        detail = f"({exc.status} {exc.code})"
        if exc.status == 401:
            return Auth0AuthError(
                f"Auth0 rejected client_id/client_secret for {self.domain} {detail}: check the Client ID and "
                "Client Secret of the machine-to-machine application"
            )
        # Auth0 gives both 403s the code access_denied; only its description
        # tells the unserved audience (a custom domain) from a missing grant.
        if exc.status == 403 and "Service not enabled" in str(exc):
            return Auth0AuthError(
                f"Auth0 at {self.domain} does not serve the Management API audience {self.audience} {detail}: "
                "use the tenant's own domain (e.g. example.us.auth0.com), not a custom domain"
            )
        if exc.status == 403:
            return Auth0AuthError(
                f"the application {self.client_id} is not authorised for the Auth0 Management API on "
                f"{self.domain} {detail}: in Auth0, Applications > APIs > Auth0 Management API > "
                "Machine to Machine Applications, authorise it with read:logs, read:users "
                "and update:users_app_metadata"
            )
        return exc

    def _renew_token(self) -> None:
        """A 401 mid-run: one fresh token per run, then the error stands."""
        self._refreshed = True
        self.token_cache.save_token(None)
        self._token = self._request_token()
        self._rest = None

    # -- logs --------------------------------------------------------------------
    def logs_after(self, log_id: str) -> LogPage:
        """Up to PAGE_SIZE logs after `log_id`, in log_id order (checkpoint mode)."""
        try:
            page = self._api("logs", lambda rest: self._logs(rest).search(from_param=log_id, take=PAGE_SIZE))
        except Auth0RequestError as exc:
            if exc.status == 400:
                raise CheckpointExpired(str(exc)) from None
            raise
        return _as_page(page)

    def oldest_logs(self, since_iso: Optional[str] = None, count: int = PAGE_SIZE) -> LogPage:
        """The oldest logs by date (optionally since a date), in date order.

        Search mode: the way to find where checkpoint mode starts."""
        query = f"date:[{since_iso} TO *]" if since_iso else None
        return self._search(query, "date:1", count)

    def newest_log(self) -> Optional[dict]:
        logs = self._search(None, "date:-1", 1)
        return logs[0] if logs else None

    def _search(self, query: Optional[str], sort: str, count: int) -> LogPage:
        page = self._api(
            "logs",
            lambda rest: self._logs(rest).search(page=0, per_page=count, sort=sort, q=query, include_totals=False),
        )
        return _as_page(page)

    # -- users ---------------------------------------------------------------------
    def user_flag(self, user_id: str, flag: str) -> Any:
        """The user's app_metadata[flag], None when unset; UserNotFound if gone."""
        user = self._api(
            "users_read",
            lambda rest: self._users(rest).get(quote(user_id, safe=""), fields=["user_id", "app_metadata"]),
            not_found=True,
        )
        if not isinstance(user, dict):  # a proxy's page, a broken body: reading it as unset would be a false Signup
            what = "text that is not JSON" if isinstance(user, str) else "JSON that is not an object"
            raise Auth0Unavailable(f"Auth0 answered the read of user {user_id} with {what}, not a user")
        metadata = user.get("app_metadata")
        return metadata.get(flag) if isinstance(metadata, dict) else None

    def set_user_flag(self, user_id: str, flag: str, patient: bool = True) -> None:
        """PATCH only `{app_metadata: {flag: true}}`: Auth0 merges top-level
        app_metadata keys, so every other key survives. Not patient: a
        rate limit raises RateLimited at once instead of waiting."""
        self._api(
            "users_write",
            lambda rest: self._users(rest).update(quote(user_id, safe=""), {"app_metadata": {flag: True}}),
            not_found=True,
            patient=patient,
        )

    # -- plumbing --------------------------------------------------------------------
    def _rest_client(self, jwt: Optional[str]) -> PooledRestClient:
        return PooledRestClient(self.transport, jwt, self.user_agent, self.keep_raw)

    def _logs(self, rest: PooledRestClient) -> Logs:
        logs = Logs(self.domain, rest.jwt or "")
        logs.client = rest
        return logs

    def _users(self, rest: PooledRestClient) -> Users:
        users = Users(self.domain, rest.jwt or "")
        users.client = rest
        return users

    def _api(
        self, kind: str, call: Callable[[PooledRestClient], T], not_found: bool = False, patient: bool = True
    ) -> T:
        """A Management API call with the current token; one renewal on 401."""
        while True:
            if self._rest is None:
                self._rest = self._rest_client(self.token().access_token)
            rest = self._rest
            try:
                return self._call(kind, lambda rest=rest: call(rest), rest, patient)
            except Auth0RequestError as exc:
                if exc.status == 401 and self._token is not None and rest.jwt != self._token.access_token:
                    continue  # renewed meanwhile (by idle work in this call's wait): try the new token
                if exc.status == 401 and not self._refreshed:
                    log.warning("Auth0 answered 401 to a %s call: requesting a fresh token once", kind)
                    self._renew_token()
                    continue
                if exc.status == 401:
                    raise Auth0AuthError(
                        f"Auth0 at {self.domain} refused a fresh access token (401 {exc.code}); "
                        "check that the application is still authorised for the Management API"
                    ) from None
                if exc.status == 403 and exc.code == "insufficient_scope":
                    scope = ENDPOINT_SCOPES[kind][0]
                    raise Auth0ScopeError(
                        f"the application {self.client_id} lacks the {scope} scope on {self.domain}: "
                        "add it under Applications > APIs > Auth0 Management API > Machine to Machine Applications",
                        scope,
                    ) from None
                if exc.status == 404 and not_found:
                    raise UserNotFound(str(exc)) from None
                raise

    def _call(self, kind: str, send: Callable[[], T], rest: PooledRestClient, patient: bool = True) -> T:
        """Send once per attempt: pace on rate-limit headers, wait out 429s,
        back off on 5xx and network errors. Raises only this module's errors."""
        failures = 0
        while True:
            self._pace(kind, patient)
            self.pacer.spend(kind)
            self.stats.calls += 1
            try:
                result = send()
                self._observe(kind, rest.last_answer)
                return result
            except LibraryError as exc:
                status = exc.status_code or 0
                self._observe(kind, rest.last_answer, throttled=status == 429)
                if status == 429:
                    self.stats.rate_limited += 1
                    if not patient:
                        raise RateLimited(f"Auth0 rate limit (429) on {kind}; deferred") from None
                    # The rate-limit headers say when a token is back; a 429
                    # that says nothing gets a second.
                    wait = max(self.pacer.wait(kind), _retry_after(exc.headers)) or 1.0
                    self._wait(kind, wait, f"Auth0 rate limit (429) on {kind}", RateLimited)
                    continue
                if status >= 500:
                    failures += 1
                    self._backoff(kind, failures, f"Auth0 answered {status} on {kind}")
                    continue
                raise Auth0RequestError(
                    f"Auth0 answered {status} {exc.error_code} on {kind}: {exc.message}", status, str(exc.error_code)
                ) from None
            except http_errors.SSLError as exc:
                raise Auth0Unavailable(
                    f"TLS failure talking to {self.domain}: {_reason(exc)}. The certificate is not trusted "
                    "by this Splunk's CA bundle (or a proxy intercepts TLS)"
                ) from None
            except http_errors.ProxyError as exc:
                failures += 1
                self._backoff(kind, failures, f"proxy error reaching {self.domain}: {_reason(exc)}")
            except (
                http_errors.NewConnectionError,  # refused, unreachable, DNS
                http_errors.TimeoutError,  # connect or read timeout
                http_errors.ProtocolError,  # the connection dropped, before or during the answer
            ) as exc:
                failures += 1
                self._backoff(kind, failures, f"cannot reach {self.domain}: {_reason(exc)}")
            except (http_errors.HTTPError, OSError) as exc:
                raise Auth0Unavailable(f"request to {self.domain} failed: {_reason(exc)}") from None

    def _observe(self, kind: str, answer: Optional[Answer], throttled: bool = False) -> None:
        if answer is not None:
            self.pacer.observe(kind, read_limits(answer.headers), throttled)

    def _pace(self, kind: str, patient: bool) -> None:
        """Wait until the bucket of this kind holds a request's worth of
        tokens, spending the wait on idle work when there is some."""
        while True:
            delay = self.pacer.wait(kind)
            if delay <= 0:
                return
            if not patient:
                raise RateLimited(f"Auth0 rate limit for {kind} exhausted; deferred")
            if delay > MAX_WAIT:
                raise RateLimited(f"Auth0 rate limit for {kind} exhausted; Auth0 asks to wait {delay:.0f}s")
            idle_ready = self._idle()
            if idle_ready <= 0:
                continue  # idle work sent a call: look again
            # Pacing is routine, not a problem: logged at DEBUG only. Wake up
            # early if the idle work can go before this call can.
            nap = min(delay, idle_ready)
            self._wait(kind, nap, f"Auth0 rate limit for {kind} exhausted", RateLimited, logging.DEBUG)

    def _idle(self) -> float:
        """Run idle work once (never nested): 0 if it sent a call, else the
        seconds until it might."""
        if self.idle_work is None or self._in_idle_work:
            return float("inf")
        self._in_idle_work = True
        try:
            return self.idle_work()
        finally:
            self._in_idle_work = False

    def _backoff(self, kind: str, failures: int, reason: str) -> None:
        if failures > self.retries:
            raise Auth0Unavailable(f"{reason}; gave up after {self.retries} retries" if self.retries else reason)
        self.stats.retries += 1
        self._wait(kind, min(BACKOFF_CAP, 2.0 ** (failures - 1)), reason, Auth0Unavailable)

    def _wait(self, kind: str, seconds: float, reason: str, error: type, level: int = logging.WARNING) -> None:
        """Sleep before a retry, unless the wait is longer than MAX_WAIT or
        would end past the run's deadline: then give up the run (the next
        interval continues from the checkpoint)."""
        seconds = max(0.0, seconds)
        if seconds > MAX_WAIT:
            raise error(f"{reason}; Auth0 asks to wait {seconds:.0f}s, longer than a run waits")
        if time.monotonic() + seconds > self.deadline:
            raise error(f"{reason}; not retrying: the run's time budget is spent")
        log.log(level, "%s: retrying %s in %.1fs", reason, kind, seconds)
        time.sleep(seconds)


def _as_page(page: Any) -> LogPage:
    """The logs of a page that are objects (anything else Auth0 might put in
    an array is dropped, with its text)."""
    if isinstance(page, dict):  # search mode with totals
        page = page.get("logs", [])
    if not isinstance(page, list):
        raise Auth0Unavailable(f"Auth0 answered a log read with {type(page).__name__}, not a list of logs")
    if not isinstance(page, LogPage):
        page = LogPage(page)
    if all(isinstance(entry, dict) for entry in page):
        return page
    kept = [index for index, entry in enumerate(page) if isinstance(entry, dict)]
    return LogPage([page[i] for i in kept], None if page.raws is None else [page.raws[i] for i in kept])


def _retry_after(headers: Any) -> float:
    """Seconds from Retry-After, when Auth0 sends one (it does not promise to), else 0."""
    try:
        value = (headers or {}).get("retry-after")
        return max(1.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _reason(exc: Exception) -> str:
    """The innermost cause, short: urllib3 nests the socket and TLS errors deeply."""
    text = str(exc)
    for pattern in (r"\[SSL: [^\]]+\][^')(\"]*", r"Name or service not known", r"Connection refused", r"timed out"):
        match = re.search(pattern, text)
        if match:
            return match.group(0).strip()
    return text[:200]
