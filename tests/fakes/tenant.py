"""A local, Auth0-compatible tenant for tests: ``FakeTenant``.

It speaks just enough of Auth0's Authentication API (``POST /oauth/token``,
client credentials) and Management API v2 (``/api/v2/logs``,
``/api/v2/users/{id}``) for the add-on to run against it unchanged, over real
HTTPS (a throwaway CA, see ``certs.py``) with HTTP/1.1 keep-alive, on
127.0.0.1 only. Behaviour follows Auth0's documentation (see PLATFORM.md):

* tokens: opaque, per client, with the client's scopes and lifetime;
* ``/api/v2/logs``: checkpoint mode (``from``/``take``, ``Link`` header) and
  search mode (``q``, ``sort``, ``page``/``per_page``, ``include_totals``,
  the 1 000-result cap), retention (``purge_before``) with 400 on a purged
  ``from``;
* users: read, and ``PATCH`` with Auth0's ``app_metadata`` merge semantics,
  each write logged as a ``sapi`` log;
* rate limits as Auth0 configures them (``ratelimit.py``: token buckets per
  endpoint group on paid plans, one for the whole Management API on free
  tenants) with ``X-RateLimit-Limit/Remaining/Reset`` on every answer and
  429s that carry those three only (``Retry-After`` only when a test
  injects it);
* scope checks that accept any scope Auth0's API reference lists for an
  endpoint, and 403 ``insufficient_scope`` worded as Auth0 words it;
* fault injection (5xx, dropped connections, delays) and accounting of every
  call, request (with its arrival time and the application whose token it
  carried), token and TLS connection.

Everything a test needs is on ``FakeTenant``; run ``python -m
tests.fakes.tenant --dir DIR`` for a seeded tenant in its own process (used
by ``make demo``).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import copy
import fnmatch
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .ratelimit import API, RESET_FULL, ROUTE_GROUPS, Bucket, BucketStats, RateLimiter

# --------------------------------------------------------------------------
# constants

RATE_LIMIT_GROUPS = ROUTE_GROUPS + ("global",)  # set_rate_limit's names; "global" = all of /api/v2
ALL_SCOPES = ("read:logs", "read:logs_users", "read:users", "update:users_app_metadata")

# Per endpoint, the scopes Auth0's Management API reference lists (docs-v2,
# api/management/v2): any one of them grants the call. Auth0's 403 names
# them all, comma-separated, in this order.
SCOPES_GET_LOGS = ("read:logs", "read:logs_users")
SCOPES_GET_USER = ("read:users", "read:current_user", "read:user_idp_tokens")
SCOPES_PATCH_USER = ("update:users", "update:users_app_metadata", "update:current_user_metadata")
# The `*current_user*` scopes let a user's own token act on that user only;
# a client-credentials token (subject `<client_id>@clients`) is nobody's, so
# here they never grant a call on a user.
_CURRENT_USER_SCOPES = frozenset({"read:current_user", "update:current_user_metadata"})

LOG_ID_WIDTH = 56
_LOG_ID_PREFIX = "900"  # real Auth0 log ids start with 900 too
_COUNTER_WIDTH = LOG_ID_WIDTH - len(_LOG_ID_PREFIX)
_LOG_ID_STEP = 10  # ids are sparse, like Auth0's: an unknown id can sort between two real ones

DEFAULT_TAKE = 50
MAX_TAKE = 100
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100
SEARCH_RESULT_CAP = 1000

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Fields of a user that PATCH may set besides the two metadata objects.
_PATCHABLE_USER_FIELDS = {
    "blocked",
    "email",
    "email_verified",
    "phone_number",
    "phone_verified",
    "given_name",
    "family_name",
    "name",
    "nickname",
    "picture",
    "username",
    "password",
    "verify_email",
    "verify_phone_number",
    "connection",
    "client_id",
}
_METADATA_FIELDS = ("app_metadata", "user_metadata")


# --------------------------------------------------------------------------
# dates


_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_iso(value: str) -> float:
    """Parse an ISO-8601 date or date-time to epoch seconds (UTC if no zone).

    Accepts what Auth0 and the add-on write (``2024-01-02T03:04:05.678Z``),
    any number of fractional digits, an offset, or a bare date. Works on
    Python 3.9, whose ``fromisoformat`` does not take ``Z``.
    """
    match = _ISO_RE.match(value.strip())
    if not match:
        raise ValueError(f"not an ISO-8601 date: {value!r}")
    year, month, day, hour, minute, second, frac, zone = match.groups()
    micros = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micros,
        tzinfo=timezone.utc,
    )
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        dt = dt - sign * offset
    return dt.timestamp()


def iso_ms(epoch_seconds: float) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (Auth0's log date format)."""
    millis = int(round(epoch_seconds * 1000))
    dt = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis % 1000:03d}Z"


# --------------------------------------------------------------------------
# small helpers


class ApiError(Exception):
    """An HTTP error answer: status, JSON body and extra headers."""

    def __init__(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def management_error(status: int, message: str, error_code: Optional[str] = None, **extra: Any) -> ApiError:
    """An error shaped like the Management API's: statusCode/error/message/errorCode."""
    body: Dict[str, Any] = {"statusCode": status, "error": _REASONS.get(status, "Error"), "message": message}
    if error_code:
        body["errorCode"] = error_code
    body.update(extra)
    return ApiError(status, body)


def _bad_query(message: str) -> ApiError:
    return management_error(400, message, "invalid_query_string")


def _project(obj: Dict[str, Any], fields: Optional[str], include_fields: Optional[str]) -> Dict[str, Any]:
    """Apply Auth0's ``fields``/``include_fields`` to one object."""
    if not fields:
        return obj
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    if (include_fields or "true").lower() == "false":
        return {k: v for k, v in obj.items() if k not in wanted}
    return {k: obj[k] for k in wanted if k in obj}


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


@dataclass(frozen=True)
class RequestRecord:
    """One request as the tenant saw it: when it arrived (the tenant's clock),
    what it was, how it was answered (None: the connection was dropped), and
    the application whose valid token it carried (None for /oauth/token and
    for requests refused before the token was checked)."""

    at: float
    method: str
    path: str
    group: str
    status: Optional[int]
    client_id: Optional[str]


class _Fault:
    __slots__ = ("status", "body", "_headers", "delay", "reset_in")

    def __init__(
        self,
        status: Optional[int],
        body: Any,
        headers: Union[None, Dict[str, str], Callable[[], Dict[str, str]]],
        delay: float,
        reset_in: Optional[float] = None,
    ):
        self.status = status
        self.body = body
        self._headers = headers
        self.delay = float(delay)
        self.reset_in = reset_in

    def headers(self) -> Dict[str, str]:
        """The fault's headers as of now (a callable is asked when served)."""
        return dict((self._headers() if callable(self._headers) else self._headers) or {})


# --------------------------------------------------------------------------
# HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection pooling shows
    timeout = 30  # seconds an idle keep-alive connection is kept
    wbufsize = -1  # buffer each answer: headers and body leave in one write
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive

    def version_string(self) -> str:
        return "FakeAuth0/1.0"

    def _dispatch(self) -> None:
        self.server.tenant._dispatch(self)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.tenant.verbose:  # type: ignore[attr-defined]
            sys.stderr.write("fake-auth0: %s\n" % (format % args))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, tenant: FakeTenant, port: int, context: ssl.SSLContext):
        self.tenant = tenant
        self.ssl_context = context
        self.live_sockets: set[ssl.SSLSocket] = set()
        self.live_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup; not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a
        # slow or broken client never blocks the accept loop.
        request.settimeout(10)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.tenant._count_connection()
        with self.live_lock:
            self.live_sockets.add(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass
        finally:
            with self.live_lock:
                self.live_sockets.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def close_live_connections(self) -> None:
        with self.live_lock:
            live = list(self.live_sockets)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --------------------------------------------------------------------------
# the tenant


class FakeTenant:
    """A fake Auth0 tenant over HTTPS on 127.0.0.1 (ephemeral port).

    ``FakeTenant()`` makes its own throwaway CA (in a temp dir removed on
    ``stop()``); pass ``ca=make_test_ca(dir)`` or ``ssl_context=`` to control
    it. The socket is bound at construction, so ``domain`` is known before
    ``start()``. Use as a context manager or with ``start()``/``stop()``.

    ``rate_limits``: the buckets to start with (``ratelimit.paid_plan()``,
    ``free_plan()``, ``separate_buckets(...)``, ``shared_bucket(...)``; none
    by default); ``reset``: what ``X-RateLimit-Reset`` means (``RESET_FULL``
    or ``RESET_NEXT``, see ratelimit.py). Both can change later with
    ``set_rate_limits``.
    """

    def __init__(
        self,
        ca: Any = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        port: int = 0,
        clock: Callable[[], float] = time.time,
        rate_limits: Iterable[Bucket] = (),
        reset: str = RESET_FULL,
        log_token_exchanges: bool = True,
        debug_endpoints: bool = False,
        verbose: bool = False,
        tenant_name: str = "fake-tenant",
    ):
        self._lock = threading.RLock()
        self._clock = clock
        self.verbose = verbose
        self.debug_endpoints = debug_endpoints
        self.log_token_exchanges = log_token_exchanges
        self.tenant_name = tenant_name

        self._own_ca_dir: Optional[str] = None
        if ssl_context is None:
            if ca is None:
                from .certs import make_test_ca

                self._own_ca_dir = tempfile.mkdtemp(prefix="fake-auth0-ca-")
                ca = make_test_ca(self._own_ca_dir)
            ssl_context = ca.server_ssl_context()
        self.ca = ca
        self.ca_bundle: Optional[str] = getattr(ca, "ca_bundle_path", None)

        # state (all behind self._lock)
        self._clients: Dict[str, Dict[str, Any]] = {}
        self._tokens: Dict[str, Dict[str, Any]] = {}
        self._all_tokens: List[str] = []
        self._users: Dict[str, Dict[str, Any]] = {}
        self._log_ids: List[str] = []
        self._logs: Dict[str, Dict[str, Any]] = {}
        self._log_time: Dict[str, float] = {}
        self._date_index: Optional[List[Tuple[float, str]]] = None
        self._id_counter = 0
        self._purged_ids: set[str] = set()
        self._max_purged_id: Optional[str] = None
        self._retention_cutoff: Optional[str] = None
        self._limiter = RateLimiter(clock, reset)
        self._limiter.configure(rate_limits)
        self._faults: Dict[str, collections.deque[_Fault]] = collections.defaultdict(collections.deque)
        self._delays: Dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._calls: collections.Counter[Tuple[str, str]] = collections.Counter()
        self._requests: List[RequestRecord] = []
        self._patches: List[Tuple[str, Dict[str, Any]]] = []
        self._connections = 0
        self._tokens_issued = 0
        self._throttled = 0

        self._server = _Server(self, port, ssl_context)
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def domain(self) -> str:
        """``127.0.0.1:PORT``: the add-on's ``domain`` parameter."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.domain}"

    @property
    def audiences(self) -> Tuple[str, ...]:
        """The Management API audience under each name this tenant answers to
        (its certificate covers 127.0.0.1 and localhost, like a tenant domain)."""
        return (self.audience, f"https://localhost:{self.port}/api/v2/")

    @property
    def audience(self) -> str:
        return f"https://{self.domain}/api/v2/"

    def start(self) -> FakeTenant:
        if self._stopped:
            raise RuntimeError("a stopped FakeTenant cannot be restarted; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # shutdown() waits up to one poll: tests stop a tenant each
                kwargs={"poll_interval": 0.005},
                name=f"fake-auth0-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
        self._server.close_live_connections()
        if self._own_ca_dir:
            shutil.rmtree(self._own_ca_dir, ignore_errors=True)

    def __enter__(self) -> FakeTenant:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def now(self) -> float:
        return self._clock()

    # ---- clients and tokens ----------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        scopes: Iterable[str] = ALL_SCOPES,
        api_grant: bool = True,
        token_lifetime: int = 86400,
        name: Optional[str] = None,
    ) -> None:
        """Register a machine-to-machine application.

        ``api_grant=False``: the application exists but has no client grant
        for the Management API (Auth0 answers 403 at /oauth/token).
        """
        with self._lock:
            self._clients[client_id] = {
                "client_id": client_id,
                "client_secret": client_secret,
                "scopes": list(scopes),
                "api_grant": bool(api_grant),
                "token_lifetime": int(token_lifetime),
                "name": name if name is not None else client_id,
            }

    def issue_token(self, client_id: str) -> str:
        """Issue a Management API token for a client directly (no HTTP call)."""
        with self._lock:
            client = self._clients[client_id]
            return self._issue_token_locked(client)

    def _issue_token_locked(self, client: Dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = {
            "client_id": client["client_id"],
            "scopes": frozenset(client["scopes"]),
            "expires_at": self._clock() + client["token_lifetime"],
        }
        self._tokens_issued += 1
        self._all_tokens.append(token)
        return token

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (a 401 mid-run)."""
        with self._lock:
            self._tokens.clear()

    @property
    def issued_token_values(self) -> List[str]:
        """Every access token ever issued, revoked ones too (leak checks)."""
        with self._lock:
            return list(self._all_tokens)

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return self._tokens_issued

    # ---- users -----------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: Optional[str] = None,
        email: Optional[str] = None,
        app_metadata: Optional[Dict[str, Any]] = None,
        **extra: Any,
    ) -> None:
        """Add (or replace) a user. ``extra`` may set any user field, e.g.
        ``logins_count``, ``user_metadata``, ``created_at``, or ``connection``
        (the identity's connection; defaults from the id's provider)."""
        provider, _, identity = user_id.partition("|")
        connection = extra.pop("connection", None)
        social = provider not in ("auth0", "email", "sms", "samlp", "waad", "adfs", "ad", "oidc", "okta")
        if connection is None:
            connection = {"auth0": "Username-Password-Authentication"}.get(provider, provider)
        now = iso_ms(self._clock())
        user: Dict[str, Any] = {
            "user_id": user_id,
            "created_at": now,
            "updated_at": now,
            "email_verified": social,
            "identities": [
                {"provider": provider, "user_id": identity or user_id, "connection": connection, "isSocial": social}
            ],
            "logins_count": 0,
        }
        if email is not None:
            user["email"] = email
        display = name if name is not None else email
        if display is not None:
            user["name"] = display
            user["nickname"] = (email or display).split("@")[0]
        user.update(copy.deepcopy(extra))
        user["app_metadata"] = copy.deepcopy(app_metadata) if app_metadata else {}
        user.setdefault("user_metadata", {})
        with self._lock:
            self._users[user_id] = user

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    @staticmethod
    def _user_view(user: Dict[str, Any]) -> Dict[str, Any]:
        out = copy.deepcopy(user)
        for key in _METADATA_FIELDS:  # Auth0 omits empty metadata objects
            if not out.get(key):
                out.pop(key, None)
        return out

    def user(self, user_id: str) -> Optional[Dict[str, Any]]:
        """The user as GET /api/v2/users/{id} shows it (deep copy), or None."""
        with self._lock:
            user = self._users.get(user_id)
            return self._user_view(user) if user is not None else None

    @property
    def users(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [self._user_view(u) for u in self._users.values()]

    @property
    def patches(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Every authorised PATCH /users/{id}: (user_id, parsed body), in order.

        Includes those answered 404 or 400; excludes those refused earlier
        (401/403/429/injected faults)."""
        with self._lock:
            return copy.deepcopy(self._patches)

    # ---- logs ------------------------------------------------------------

    def _next_log_id_locked(self) -> str:
        self._id_counter += 1
        return _LOG_ID_PREFIX + str(self._id_counter * _LOG_ID_STEP).zfill(_COUNTER_WIDTH)

    def _insert_log_locked(self, log: Dict[str, Any]) -> str:
        if not log.get("date"):
            log["date"] = iso_ms(self._clock())
        when = parse_iso(log["date"])
        log_id = log.get("log_id")
        if not log_id:
            log_id = self._next_log_id_locked()
            log["log_id"] = log_id
        else:
            log_id = str(log_id)
            log["log_id"] = log_id
            if log_id in self._logs:
                raise ValueError(f"duplicate log_id {log_id}")
            if len(log_id) == LOG_ID_WIDTH and log_id.isdigit() and log_id.startswith(_LOG_ID_PREFIX):
                self._id_counter = max(self._id_counter, int(log_id[len(_LOG_ID_PREFIX) :]) // _LOG_ID_STEP)
        if not self._log_ids or log_id > self._log_ids[-1]:
            self._log_ids.append(log_id)
        else:
            bisect.insort(self._log_ids, log_id)
        self._logs[log_id] = log
        self._log_time[log_id] = when
        self._date_index = None
        return log_id

    def add_log(self, log: Dict[str, Any]) -> str:
        """Add one log (deep-copied); fills ``log_id`` (56 digits, increasing
        with insertion) and ``date`` (now) when absent. Returns the log_id."""
        with self._lock:
            return self._insert_log_locked(copy.deepcopy(log))

    def add_logs(self, logs: Iterable[Dict[str, Any]], copy_logs: bool = True) -> List[str]:
        """Add many logs at once. ``copy_logs=False`` takes ownership of the
        dicts (fast path for generated data)."""
        with self._lock:
            return [self._insert_log_locked(copy.deepcopy(x) if copy_logs else x) for x in logs]

    @property
    def logs(self) -> List[Dict[str, Any]]:
        """All retained logs in log_id order (deep copy)."""
        with self._lock:
            return [copy.deepcopy(self._logs[i]) for i in self._log_ids]

    @property
    def log_count(self) -> int:
        with self._lock:
            return len(self._log_ids)

    def log(self, log_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            log = self._logs.get(log_id)
            return copy.deepcopy(log) if log is not None else None

    def purge_before(self, iso_date: str) -> int:
        """Apply a retention cutoff: delete every log dated before ``iso_date``.

        Later a ``from`` naming a deleted log, or sorting before the oldest
        retained one, gets 400. Returns how many logs were deleted."""
        cutoff = parse_iso(iso_date)
        with self._lock:
            gone = [i for i in self._log_ids if self._log_time[i] < cutoff]
            if gone:
                gone_set = set(gone)
                self._log_ids = [i for i in self._log_ids if i not in gone_set]
                for log_id in gone:
                    del self._logs[log_id]
                    del self._log_time[log_id]
                self._purged_ids.update(gone)
                top = max(gone)
                if self._max_purged_id is None or top > self._max_purged_id:
                    self._max_purged_id = top
                self._date_index = None
            self._retention_cutoff = iso_date
            return len(gone)

    @property
    def retention_cutoff(self) -> Optional[str]:
        with self._lock:
            return self._retention_cutoff

    def _from_out_of_range_locked(self, from_id: str) -> bool:
        if from_id in self._purged_ids:
            return True
        if self._max_purged_id is None:
            return False
        if self._log_ids:
            return from_id < self._log_ids[0]
        return from_id <= self._max_purged_id

    # ---- rate limits and faults --------------------------------------------

    def set_rate_limits(self, buckets: Iterable[Bucket], reset: Optional[str] = None) -> None:
        """Replace every rate limit with ``buckets`` (each starts full), e.g.
        ``set_rate_limits(ratelimit.paid_plan())``; ``()`` removes them all.
        ``reset``: change what X-RateLimit-Reset means (RESET_FULL/RESET_NEXT)."""
        with self._lock:
            self._limiter.configure(buckets, reset)

    def set_rate_limit(
        self, group: str, limit: Optional[int], per_seconds: float = 1.0, burst: Optional[int] = None
    ) -> None:
        """Limit one route group (one of ROUTE_GROUPS, or ``"global"`` for all
        of /api/v2) to ``limit`` requests per ``per_seconds`` in a bucket of
        its own named after it (``burst`` requests at most, default
        ``limit``), replacing an earlier one of that name; other buckets
        stay. ``limit=None`` removes it."""
        if group not in RATE_LIMIT_GROUPS:
            raise ValueError("unknown rate-limit group {!r} (one of {})".format(group, ", ".join(RATE_LIMIT_GROUPS)))
        with self._lock:
            if limit is None:
                self._limiter.remove(group)
                return
            groups = (API,) if group == "global" else (group,)
            self._limiter.set(Bucket(group, groups, burst=burst or int(limit), per_second=limit / per_seconds))

    @property
    def rate_limits(self) -> List[Bucket]:
        with self._lock:
            return self._limiter.buckets

    @property
    def rate_limit_stats(self) -> Dict[str, BucketStats]:
        """Per bucket name: requests it let through and 429s it caused."""
        with self._lock:
            return self._limiter.stats()

    def fail_next(
        self,
        route_group: str,
        status: Optional[int],
        times: int = 1,
        body: Any = None,
        headers: Union[None, Dict[str, str], Callable[[], Dict[str, str]]] = None,
        delay: float = 0.0,
        reset_in: Optional[float] = None,
    ) -> None:
        """The next ``times`` requests of ``route_group`` (or ``"*"``: any)
        get ``status`` before any other processing; ``status=None`` closes
        the connection without answering. ``body``: dict/list -> JSON,
        str/bytes -> text; default an Auth0-ish JSON (HTML for 502/504).
        A 429 gets X-RateLimit-Limit/Remaining/Reset (those of the bucket
        covering the request, else a small empty one's) unless ``headers``
        sets them, and ``Retry-After`` only if ``headers`` has it (a callable
        ``headers`` is called when the fault is served: rate-limit headers
        relative to the answer, not to the test's setup, which a loaded CI
        machine may make last longer than a short reset);
        ``reset_in``: X-RateLimit-Reset that many seconds after the 429 is
        served (rounded up to whole epoch seconds, as Auth0 sends it).
        ``delay``: seconds to wait first (for timeouts)."""
        with self._lock:
            for _ in range(times):
                self._faults[route_group].append(_Fault(status, body, headers, delay, reset_in))

    def delay_next(self, route_group: str, seconds: float, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``route_group`` normally,
        but only after ``seconds`` (to exercise client timeouts)."""
        with self._lock:
            for _ in range(times):
                self._delays[route_group].append(float(seconds))

    def _take_fault_locked(self, group: str) -> Optional[_Fault]:
        for key in (group, "*"):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        return None

    def _take_delay_locked(self, group: str) -> float:
        for key in (group, "*"):
            queue = self._delays.get(key)
            if queue:
                return queue.popleft()
        return 0.0

    # ---- accounting --------------------------------------------------------

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @property
    def calls(self) -> collections.Counter[Tuple[str, str]]:
        """Requests received, keyed by (method, route group), e.g.
        ("GET", "logs"), ("PATCH", "users_write"), ("POST", "token")."""
        with self._lock:
            return collections.Counter(self._calls)

    @property
    def requests(self) -> List[Tuple[str, str, Optional[int]]]:
        """(method, path with query, status) per request; status None = dropped."""
        with self._lock:
            return [(r.method, r.path, r.status) for r in self._requests]

    @property
    def request_log(self) -> List[RequestRecord]:
        """Every request with its arrival time and the application whose
        token it carried (see RequestRecord), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """TLS connections accepted (completed handshakes)."""
        with self._lock:
            return self._connections

    @property
    def throttled(self) -> int:
        """How many 429 answers were served (rate limits and injected ones)."""
        with self._lock:
            return self._throttled

    def reset_counters(self) -> None:
        """Zero calls, requests, connections, tokens_issued, throttled and
        patches (data, tokens, limits and faults are kept)."""
        with self._lock:
            self._calls.clear()
            self._requests.clear()
            self._patches.clear()
            self._connections = 0
            self._tokens_issued = 0
            self._throttled = 0

    # ---- request handling --------------------------------------------------

    @staticmethod
    def _route_group(method: str, path: str) -> str:
        if path == "/oauth/token":
            return "token"
        if path == "/api/v2/logs" or path.startswith("/api/v2/logs/"):
            return "logs"
        if path.startswith("/api/v2/users/"):
            if method == "PATCH":
                return "users_write"
            return "users_read"
        if path.startswith("/__fake__/"):
            return "fake"
        return "other"

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        raw_path = handler.path
        split = urlsplit(raw_path)
        path = split.path
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        group = self._route_group(method, path)
        arrived = self._clock()
        handler.fake_client_id = None  # type: ignore[attr-defined]  # set by _authenticate

        def record(status: Optional[int]) -> None:
            with self._lock:
                client_id = getattr(handler, "fake_client_id", None)
                self._requests.append(RequestRecord(arrived, method, raw_path, group, status, client_id))
                if status == 429:
                    self._throttled += 1

        with self._lock:
            self._calls[(method, group)] += 1
            fault = self._take_fault_locked(group)
            delay = 0.0 if fault else self._take_delay_locked(group)

        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is None:
                record(None)
                handler.close_connection = True
                try:
                    handler.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            status, payload, headers = self._fault_response(fault, group)
            self._send(handler, status, payload, headers)
            record(status)
            return
        if delay:
            time.sleep(delay)

        try:
            status, payload, headers = self._route(handler, method, path, query, body, group)
        except ApiError as err:
            status, payload, headers = err.status, err.body, err.headers
        except Exception as exc:  # noqa: BLE001 -- a bug in the fake: answer 500 and say so loudly
            sys.stderr.write(f"fake-auth0: internal error on {method} {raw_path}: {exc!r}\n")
            status, payload, headers = (
                500,
                {"statusCode": 500, "error": "Internal Server Error", "message": f"fake tenant bug: {exc!r}"},
                {},
            )
        self._send(handler, status, payload, headers)
        record(status)

    @staticmethod
    def _limited_groups(group: str) -> List[str]:
        """What a request counts against: its own group, and for /api/v2 the
        Management API as a whole (a bucket over API)."""
        if group == "token":
            return ["token"]
        return [group, API] if group in ROUTE_GROUPS else [API]

    def _fault_response(self, fault: _Fault, group: str) -> Tuple[int, Any, Dict[str, str]]:
        status = int(fault.status)  # type: ignore[arg-type]
        headers = fault.headers()
        body = fault.body
        if body is None:
            reason = _REASONS.get(status, "Error")
            if status in (502, 504):
                title = f"{status} {reason}"
                body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
                headers.setdefault("Content-Type", "text/html")
            elif status == 429:
                body = {
                    "statusCode": 429,
                    "error": reason,
                    "message": "Global limit has been reached",
                    "errorCode": "too_many_requests",
                }
            else:
                body = {"statusCode": status, "error": reason, "message": reason}
        if status == 429:  # Auth0's three headers; Retry-After only if the test gave it
            with self._lock:
                defaults = self._limiter.refusal_headers(self._limited_groups(group))
                if fault.reset_in is not None:
                    defaults["X-RateLimit-Reset"] = str(int(math.ceil(self._clock() + fault.reset_in)))
            for key, value in defaults.items():
                if key.lower() not in {name.lower() for name in headers}:
                    headers[key] = value
        return status, body, headers

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: Dict[str, str]) -> None:
        headers = dict(headers)
        content_type = headers.pop("Content-Type", None)
        if isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
            content_type = content_type or "application/octet-stream"
        elif isinstance(payload, str):
            data = payload.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            content_type = content_type or "application/json; charset=utf-8"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def _route(
        self, handler: BaseHTTPRequestHandler, method: str, path: str, query: Dict[str, str], body: bytes, group: str
    ) -> Tuple[int, Any, Dict[str, str]]:
        if group == "token":
            return self._oauth_token(handler, method, body)
        if group == "fake":
            return self._debug_endpoint(method, path)
        if not path.startswith("/api/v2/"):
            return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}, {}

        with self._lock:
            allowed, rl_headers = self._limiter.take(self._limited_groups(group))
        if not allowed:
            err = {
                "statusCode": 429,
                "error": "Too Many Requests",
                "message": "Global limit has been reached",
                "errorCode": "too_many_requests",
            }
            return 429, err, rl_headers
        try:
            token = self._authenticate(handler)
            if group == "logs" and method == "GET":
                status, payload, headers = self._get_logs(token, path, query)
            elif group == "users_read" and method == "GET":
                status, payload, headers = self._get_user(token, path, query)
            elif group == "users_write":
                status, payload, headers = self._patch_user(handler, token, path, body)
            else:
                raise management_error(404, "Not Found")
        except ApiError as err:
            err.headers = dict(rl_headers, **err.headers)
            raise
        return status, payload, dict(rl_headers, **headers)

    # ---- /oauth/token ------------------------------------------------------

    def _oauth_token(
        self, handler: BaseHTTPRequestHandler, method: str, body: bytes
    ) -> Tuple[int, Any, Dict[str, str]]:
        with self._lock:
            allowed, rl_headers = self._limiter.take(self._limited_groups("token"))
        if not allowed:
            return 429, {"error": "too_many_requests", "error_description": "Global limit has been reached"}, rl_headers

        def deny(status: int, error: str, description: str) -> Tuple[int, Any, Dict[str, str]]:
            return status, {"error": error, "error_description": description}, rl_headers

        if method != "POST":
            return deny(404, "not_found", "Not Found")
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        params: Dict[str, Any] = {}
        text = body.decode("utf-8", errors="replace")
        try:
            if content_type == "application/json" or (not content_type and text.lstrip().startswith("{")):
                loaded = json.loads(text or "{}")
                if not isinstance(loaded, dict):
                    raise ValueError("not an object")
                params = loaded
            else:
                params = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        except ValueError:
            return deny(400, "invalid_request", "Invalid request body")

        auth = handler.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
                params.setdefault("client_id", unquote(user))
                params.setdefault("client_secret", unquote(password))
            except (ValueError, UnicodeDecodeError):
                return deny(401, "access_denied", "Unauthorized")

        grant_type = params.get("grant_type")
        if not grant_type:
            return deny(400, "invalid_request", "Missing required parameter: grant_type")
        with self._lock:
            client = self._clients.get(str(params.get("client_id") or ""))
            if client is None or not secrets.compare_digest(
                str(params.get("client_secret") or ""), client["client_secret"]
            ):
                return deny(401, "access_denied", "Unauthorized")
            if grant_type != "client_credentials":
                return deny(403, "unauthorized_client", f"Grant type '{grant_type}' not allowed for the client.")
            audience = params.get("audience")
            if not audience:
                return deny(
                    403,
                    "access_denied",
                    "No audience parameter was provided, and no default audience has been configured",
                )
            if audience not in self.audiences:
                return deny(403, "access_denied", f"Service not enabled within domain: {audience}")
            if not client["api_grant"]:
                return deny(
                    403,
                    "access_denied",
                    f'Client is not authorized to access "{self.audience}". '
                    'You need to create a "client-grant" associated to this API. See: '
                    "https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants",
                )
            token = self._issue_token_locked(client)
            if self.log_token_exchanges:
                self._insert_log_locked(
                    {
                        "date": iso_ms(self._clock()),
                        "type": "seccft",
                        "description": "Client Credentials for Access Token",
                        "connection_id": "",
                        "client_id": client["client_id"],
                        "client_name": client["name"],
                        "ip": handler.client_address[0],
                        "user_agent": handler.headers.get("User-Agent") or "",
                        "details": {},
                        "hostname": self.domain,
                        "user_id": "",
                        "user_name": "",
                        "audience": audience,
                        "scope": " ".join(client["scopes"]),
                    }
                )
            payload = {
                "access_token": token,
                "scope": " ".join(client["scopes"]),
                "expires_in": client["token_lifetime"],
                "token_type": "Bearer",
            }
        return 200, payload, dict(rl_headers, **{"Cache-Control": "no-store", "Pragma": "no-cache"})

    # ---- /api/v2 -----------------------------------------------------------

    def _authenticate(self, handler: BaseHTTPRequestHandler) -> Dict[str, Any]:
        auth = handler.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        with self._lock:
            record = self._tokens.get(token) if token else None
            if record is None or record["expires_at"] <= self._clock():
                raise management_error(401, "Invalid token", attributes={"error": "Invalid token"})
            handler.fake_client_id = record["client_id"]  # type: ignore[attr-defined]
            return record

    @staticmethod
    def _require_scope(token: Dict[str, Any], any_of: Tuple[str, ...]) -> None:
        """Any one of the endpoint's scopes grants the call (a client token's
        ``*current_user*`` scopes grant nothing, see _CURRENT_USER_SCOPES);
        otherwise 403 with the message Auth0 sends, which lists them all:
        "Insufficient scope, expected any of: read:users,read:current_user,..."."""
        if not token["scopes"].intersection(set(any_of) - _CURRENT_USER_SCOPES):
            raise management_error(
                403, "Insufficient scope, expected any of: {}".format(",".join(any_of)), "insufficient_scope"
            )

    @staticmethod
    def _int_param(query: Dict[str, str], name: str, default: int, minimum: int = 0) -> int:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _bad_query(
                f"Query validation error: 'Expected type integer but found type string' on property {name}."
            ) from None
        if value < minimum:
            raise _bad_query(f"Query validation error: '{name}' must be at least {minimum}.")
        return value

    def _get_logs(self, token: Dict[str, Any], path: str, query: Dict[str, str]) -> Tuple[int, Any, Dict[str, str]]:
        self._require_scope(token, SCOPES_GET_LOGS)
        fields, include_fields = query.get("fields"), query.get("include_fields")
        if path != "/api/v2/logs":  # GET /api/v2/logs/{id}
            log_id = unquote(path[len("/api/v2/logs/") :])
            with self._lock:
                log = self._logs.get(log_id)
                if log is None:
                    raise management_error(404, "log not found", "inexistent_log")
                return 200, _project(log, fields, include_fields), {}

        from_id = query.get("from")
        if from_id:  # checkpoint mode: everything else is ignored
            take = self._int_param(query, "take", DEFAULT_TAKE, minimum=1)
            if take > MAX_TAKE:
                raise _bad_query(f"Query validation error: 'take' must be less than or equal to {MAX_TAKE}.")
            if not from_id.isdigit():
                raise _bad_query('The "from" parameter must be a log_id.')
            with self._lock:
                if self._from_out_of_range_locked(from_id):
                    raise _bad_query(
                        f'The "from" parameter is out of range: log {from_id} is older than the tenant\'s log '
                        "retention (deleted due to the retention policy)."
                    )
                start = bisect.bisect_right(self._log_ids, from_id)
                # stored logs are never mutated after insertion: no copy needed
                page = [self._logs[i] for i in self._log_ids[start : start + take]]
            headers = {}
            if page:
                next_from = quote(page[-1]["log_id"])
                headers["Link"] = f'<https://{self.domain}/api/v2/logs?from={next_from}&take={take}>; rel="next"'
            return 200, page, headers

        # search mode
        per_page = self._int_param(query, "per_page", DEFAULT_PER_PAGE, minimum=0)
        page_no = self._int_param(query, "page", 0, minimum=0)
        if per_page > MAX_PER_PAGE:
            raise _bad_query(f"Query validation error: 'per_page' must be less than or equal to {MAX_PER_PAGE}.")
        if page_no * per_page + per_page > SEARCH_RESULT_CAP:
            raise _bad_query(
                f"Requesting page {page_no} exceeds the allowed maximum of {SEARCH_RESULT_CAP} records: please "
                "consider searching by checkpoint https://auth0.com/docs/logs/retrieve-log-events-using-mgmt-api"
                "#retrieve-logs-by-checkpoint"
            )
        sort = query.get("sort") or "date:-1"
        sort_match = re.match(r"^(\w+):(-?1)$", sort)
        if not sort_match:
            raise _bad_query(f"Query validation error: invalid sort {sort!r} (use field:1 or field:-1).")
        sort_field, direction = sort_match.group(1), int(sort_match.group(2))
        predicate = _compile_query(query.get("q") or "")
        with self._lock:
            if sort_field == "date":
                if self._date_index is None:
                    self._date_index = sorted((self._log_time[i], i) for i in self._log_ids)
                ordered = [i for _, i in self._date_index]
            else:
                ordered = sorted(self._log_ids, key=lambda i: (str(self._logs[i].get(sort_field, "")), i))
            if direction < 0:
                ordered.reverse()
            matches = [i for i in ordered if predicate(self._logs[i], self._log_time[i])]
            start = page_no * per_page
            chosen = [_project(self._logs[i], fields, include_fields) for i in matches[start : start + per_page]]
        if (query.get("include_totals") or "").lower() == "true":
            return (
                200,
                {"start": start, "limit": per_page, "length": len(chosen), "total": len(matches), "logs": chosen},
                {},
            )
        return 200, chosen, {}

    def _user_id_from_path(self, path: str) -> str:
        return unquote(path[len("/api/v2/users/") :])

    def _get_user(self, token: Dict[str, Any], path: str, query: Dict[str, str]) -> Tuple[int, Any, Dict[str, str]]:
        self._require_scope(token, SCOPES_GET_USER)
        user_id = self._user_id_from_path(path)
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                raise management_error(404, "The user does not exist.", "inexistent_user")
            view = self._user_view(user)
        return 200, _project(view, query.get("fields"), query.get("include_fields")), {}

    def _patch_user(
        self, handler: BaseHTTPRequestHandler, token: Dict[str, Any], path: str, body: bytes
    ) -> Tuple[int, Any, Dict[str, str]]:
        if handler.command != "PATCH":
            raise management_error(404, "Not Found")
        try:
            payload = json.loads(body.decode("utf-8") or "null")
        except ValueError:
            raise management_error(400, "Invalid request payload JSON format", "invalid_body") from None
        if isinstance(payload, dict) and payload and set(payload) <= set(_METADATA_FIELDS):
            self._require_scope(token, SCOPES_PATCH_USER)
        else:  # other fields: only the broad scope (Auth0's wording varies by field here)
            self._require_scope(token, ("update:users",))
        user_id = self._user_id_from_path(path)
        with self._lock:
            self._patches.append((user_id, copy.deepcopy(payload)))
            if not isinstance(payload, dict):
                found = type(payload).__name__
                raise management_error(
                    400, f"Payload validation error: 'Expected type object but found type {found}'.", "invalid_body"
                )
            if not payload:
                raise management_error(
                    400, "Payload validation error: 'Too few properties defined (0), minimum 1'.", "invalid_body"
                )
            unknown = sorted(set(payload) - _PATCHABLE_USER_FIELDS - set(_METADATA_FIELDS))
            if unknown:
                names = ",".join(unknown)
                raise management_error(
                    400, f"Payload validation error: 'Additional properties not allowed: {names}'.", "invalid_body"
                )
            for key in _METADATA_FIELDS:
                if key in payload and payload[key] is not None and not isinstance(payload[key], dict):
                    raise management_error(
                        400,
                        "Payload validation error: 'Expected type object but found "
                        f"type {type(payload[key]).__name__}' on property {key}.",
                        "invalid_body",
                    )
            user = self._users.get(user_id)
            if user is None:
                raise management_error(404, "The user does not exist.", "inexistent_user")
            for key, value in payload.items():
                if key in _METADATA_FIELDS:
                    current = user.setdefault(key, {})
                    if not value:  # {} (or null) wipes the whole object
                        current.clear()
                        continue
                    for meta_key, meta_value in value.items():
                        if meta_value is None:  # null deletes the key
                            current.pop(meta_key, None)
                        else:  # top-level merge; nested values replaced wholesale
                            current[meta_key] = copy.deepcopy(meta_value)
                elif key not in ("password", "verify_email", "verify_phone_number", "connection", "client_id"):
                    user[key] = copy.deepcopy(value)
            user["updated_at"] = iso_ms(self._clock())
            view = self._user_view(user)
            client = self._clients.get(token["client_id"], {})
            self._insert_log_locked(
                {
                    "date": iso_ms(self._clock()),
                    "type": "sapi",
                    "description": "Update a user",
                    "client_id": token["client_id"],
                    "client_name": "",
                    "ip": handler.client_address[0],
                    "user_agent": handler.headers.get("User-Agent") or "",
                    "details": {
                        "request": {
                            "method": "patch",
                            "path": f"/api/v2/users/{user_id}",
                            "query": {},
                            "userAgent": handler.headers.get("User-Agent") or "",
                            "body": copy.deepcopy(payload),
                            "channel": "api",
                            "ip": handler.client_address[0],
                            "auth": {"user": {}, "strategy": "jwt", "credentials": {"scopes": sorted(token["scopes"])}},
                        },
                        "response": {"statusCode": 200, "body": {"user_id": user_id}},
                    },
                    "hostname": self.domain,
                    "user_id": client.get("client_id", token["client_id"]) + "@clients",
                }
            )
        return 200, view, {}

    # ---- /__fake__ (demo only) -------------------------------------------

    def _debug_endpoint(self, method: str, path: str) -> Tuple[int, Any, Dict[str, str]]:
        if not self.debug_endpoints or method != "GET":
            return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}, {}
        if path == "/__fake__/users":
            return 200, self.users, {}
        if path == "/__fake__/logs":
            return 200, self.logs, {}
        if path == "/__fake__/calls":
            with self._lock:
                return (
                    200,
                    {
                        "calls": {"{} {}".format(*k): v for k, v in sorted(self._calls.items())},
                        "tokens_issued": self._tokens_issued,
                        "connections": self._connections,
                        "throttled": self._throttled,
                        "patches": copy.deepcopy(self._patches),
                        "logs": len(self._log_ids),
                    },
                    {},
                )
        return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}, {}


# --------------------------------------------------------------------------
# Lucene-ish `q` for search mode


_RANGE_RE = re.compile(r'^([\w.]+):([\[{])\s*("[^"]*"|\S+)\s+TO\s+("[^"]*"|\S+)\s*([\]}])$')
_TERM_RE = re.compile(r'^([\w.]+):("[^"]*"|\S+)$')


def _unquote_term(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _compile_query(q: str) -> Callable[[Dict[str, Any], float], bool]:
    """Compile the subset of Auth0's log search syntax the tests need:
    ``field:value`` (``*`` wildcards, quotes) and ``field:[A TO B]`` /
    ``{A TO B}`` ranges (``*`` = open; dates compared as instants), joined
    with ``AND``. Anything else is a 400, as on Auth0."""
    q = q.strip()
    if not q:
        return lambda log, when: True
    checks: List[Callable[[Dict[str, Any], float], bool]] = []
    for part in re.split(r"\s+AND\s+", q):
        part = part.strip()
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        range_match = _RANGE_RE.match(part)
        if range_match:
            field, open_br, low, high, close_br = range_match.groups()
            checks.append(_range_check(field, _unquote_term(low), _unquote_term(high), open_br == "[", close_br == "]"))
            continue
        term_match = _TERM_RE.match(part)
        if term_match:
            field, value = term_match.group(1), _unquote_term(term_match.group(2))
            checks.append(_term_check(field, value))
            continue
        raise _bad_query(f"Invalid query: {part}")
    return lambda log, when: all(check(log, when) for check in checks)


def _range_check(
    field: str, low: str, high: str, low_incl: bool, high_incl: bool
) -> Callable[[Dict[str, Any], float], bool]:
    if field == "date":
        try:
            lo = None if low == "*" else parse_iso(low)
            hi = None if high == "*" else parse_iso(high)
        except ValueError as exc:
            raise _bad_query(f"Invalid query: {exc}") from None

        def check_date(log: Dict[str, Any], when: float) -> bool:
            if lo is not None and (when < lo or (when == lo and not low_incl)):
                return False
            if hi is not None and (when > hi or (when == hi and not high_incl)):
                return False
            return True

        return check_date

    def check_value(log: Dict[str, Any], when: float) -> bool:
        value = _dig(log, field)
        if value is None:
            return False
        value = str(value)
        if low != "*" and (value < low or (value == low and not low_incl)):
            return False
        if high != "*" and (value > high or (value == high and not high_incl)):
            return False
        return True

    return check_value


def _term_check(field: str, expected: str) -> Callable[[Dict[str, Any], float], bool]:
    def check(log: Dict[str, Any], when: float) -> bool:
        value = _dig(log, field)
        if value is None:
            return False
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "*" in expected or "?" in expected:
            return fnmatch.fnmatchcase(text, expected)
        return text == expected

    return check


# --------------------------------------------------------------------------
# CLI: a seeded tenant in its own process (make demo)


def main(argv: Optional[List[str]] = None) -> int:
    from .certs import make_test_ca
    from .seed import DEFAULT_SEED_PATH, MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, load_seed

    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.tenant",
        description="Serve a seeded fake Auth0 tenant on 127.0.0.1 until SIGTERM/SIGINT.",
    )
    parser.add_argument("--seed", default=str(DEFAULT_SEED_PATH), help="seed fixture (JSON)")
    parser.add_argument("--dir", required=True, help="directory for the throwaway CA files")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)

    os.makedirs(args.dir, exist_ok=True)
    ca = make_test_ca(args.dir)
    tenant = FakeTenant(ca=ca, port=args.port, debug_endpoints=True, verbose=args.verbose)
    load_seed(tenant, args.seed)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tenant.start()
    try:
        sys.stdout.write(
            json.dumps(
                {
                    "domain": tenant.domain,
                    "ca_bundle": ca.ca_bundle_path,
                    "client_id": MAIN_CLIENT_ID,
                    "client_secret": MAIN_CLIENT_SECRET,
                }
            )
            + "\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        tenant.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
