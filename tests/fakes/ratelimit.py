"""Auth0's rate limits for the fake tenant: token buckets and their headers.

What Auth0 documents (docs-v2, "Rate Limit Policy" and "Rate Limit
Configurations"; PLATFORM.md "Rate limits"):

* every limit is a token bucket: it holds at most ``burst`` requests and is
  refilled at a sustained rate; a request takes one token, and one that
  finds its bucket empty is answered 429;
* paid plans (Essentials, Professional) limit Management API endpoint
  groups, each in a bucket of its own: Read Logs (burst 10, 100 a minute),
  Read Users (40, 500 a minute) and Write Users (20, 200 a minute). User
  reads and writes do *not* share a bucket: Auth0's table lists them as two
  endpoint groups with limits of their own, so ``paid_plan()`` has three;
* free tenants have one limit for the whole Management API: burst 2, 2 a
  second, which every log read and user call shares (``free_plan()``);
* each answer carries ``X-RateLimit-Limit`` (the bucket's size),
  ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (UTC epoch seconds).
  A 429 carries the same three and nothing else: Auth0 does not promise
  ``Retry-After``.

What ``X-RateLimit-Reset`` means, Auth0's two articles word differently.
auth0/docs' "Rate Limits" says "unix time when the max requests for the
bucket will be available again": when the bucket is full again
(``RESET_FULL``, the default here). docs-v2's "Rate limit use cases" says
"the expected time when additional requests will be added to the bucket":
when the next request's worth is back (``RESET_NEXT``). A client that paces
on the header must be right under both; tests can pick either.

Refill here is continuous (docs-v2: a per-second limit adds requests "by
milliseconds"); a bucket starts full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

# The fake tenant's route groups. "token" is the Authentication API's
# /oauth/token; the other three are Management API endpoint groups.
ROUTE_GROUPS = ("token", "logs", "users_read", "users_write")
# A bucket over API covers every /api/v2 request, whatever its group (the
# free plan's one limit, or a tenant-wide global limit).
API = "api"

RESET_FULL = "full"
RESET_NEXT = "next"

# X-RateLimit-Limit/Remaining sent for a request no bucket covers.
UNLIMITED_HEADER_VALUE = 1000


@dataclass(frozen=True)
class Bucket:
    """One rate limit: ``burst`` requests at most, refilled at ``per_second``,
    shared by the requests of ``groups`` (route groups, or ``API`` for all
    of /api/v2)."""

    name: str
    groups: Tuple[str, ...]
    burst: int
    per_second: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_second <= 0:
            raise ValueError(f"bucket {self.name!r}: burst must be >= 1 and per_second > 0")
        unknown = set(self.groups) - set(ROUTE_GROUPS) - {API}
        if unknown or not self.groups:
            raise ValueError(f"bucket {self.name!r}: unknown groups {sorted(unknown)} (use {ROUTE_GROUPS} or API)")


# ---- the configurations Auth0 has, and the ones issue 8 measures ----------


def paid_plan() -> Tuple[Bucket, ...]:
    """Essentials/Professional: logs, user reads and user writes apart."""
    return (
        Bucket("logs", ("logs",), burst=10, per_second=100 / 60),
        Bucket("users_read", ("users_read",), burst=40, per_second=500 / 60),
        Bucket("users_write", ("users_write",), burst=20, per_second=200 / 60),
    )


def free_plan() -> Tuple[Bucket, ...]:
    """Free tenants: one bucket for the whole Management API."""
    return (Bucket("management", (API,), burst=2, per_second=2.0),)


def separate_buckets(logs: Tuple[int, float] = (10, 5.0), users: Tuple[int, float] = (10, 10.0)) -> Tuple[Bucket, ...]:
    """A log bucket and a user bucket, each ``(burst, per_second)``; user
    reads and writes share theirs (issue 8's measurement: logs 5/s, user
    calls 10/s, bursts of 10)."""
    return (
        Bucket("logs", ("logs",), burst=logs[0], per_second=logs[1]),
        Bucket("users", ("users_read", "users_write"), burst=users[0], per_second=users[1]),
    )


def shared_bucket(burst: int = 10, per_second: float = 10.0) -> Tuple[Bucket, ...]:
    """One bucket for every Management API call (a free tenant's shape)."""
    return (Bucket("management", (API,), burst=burst, per_second=per_second),)


# ---- the limiter -------------------------------------------------------------


@dataclass
class BucketStats:
    """What one bucket saw: requests it let through and 429s it caused."""

    bucket: Bucket
    taken: int = 0
    refused: int = 0


@dataclass
class _Live:
    spec: Bucket
    tokens: float
    updated: float
    stats: BucketStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = BucketStats(self.spec)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.spec.burst), self.tokens + (now - self.updated) * self.spec.per_second)
            self.updated = now

    def empty(self) -> bool:
        return self.tokens < 1.0 - 1e-9

    def remaining(self) -> int:
        return int(math.floor(self.tokens + 1e-9))

    def full_in(self) -> float:
        return max(0.0, (self.spec.burst - self.tokens) / self.spec.per_second)

    def next_in(self) -> float:
        """Seconds until one more whole request is in the bucket (0 when full)."""
        if self.tokens >= self.spec.burst - 1e-9:
            return 0.0
        whole = math.floor(self.tokens + 1e-9)
        return max(0.0, (whole + 1 - self.tokens) / self.spec.per_second)


class RateLimiter:
    """The tenant's buckets. Not thread-safe: the tenant calls it under its lock."""

    def __init__(self, clock: Callable[[], float], reset: str = RESET_FULL) -> None:
        self._clock = clock
        self._live: Dict[str, _Live] = {}
        self.reset = reset
        self._check_reset(reset)

    @staticmethod
    def _check_reset(reset: str) -> None:
        if reset not in (RESET_FULL, RESET_NEXT):
            raise ValueError(f"reset must be {RESET_FULL!r} or {RESET_NEXT!r}, got {reset!r}")

    def configure(self, buckets: Iterable[Bucket], reset: Optional[str] = None) -> None:
        """Replace every bucket (each starts full)."""
        if reset is not None:
            self._check_reset(reset)
            self.reset = reset
        self._live = {}
        for bucket in buckets:
            self.set(bucket)

    def set(self, bucket: Bucket) -> None:
        """Add a bucket, or replace the one of that name (it starts full)."""
        self._live[bucket.name] = _Live(bucket, float(bucket.burst), self._clock())

    def remove(self, name: str) -> None:
        self._live.pop(name, None)

    @property
    def buckets(self) -> List[Bucket]:
        return [live.spec for live in self._live.values()]

    def stats(self) -> Dict[str, BucketStats]:
        return {name: BucketStats(live.spec, live.stats.taken, live.stats.refused) for name, live in self._live.items()}

    def _covering(self, groups: Iterable[str]) -> List[_Live]:
        wanted = set(groups)
        return [live for live in self._live.values() if wanted & set(live.spec.groups)]

    def take(self, groups: Iterable[str]) -> Tuple[bool, Dict[str, str]]:
        """One request of ``groups``: take a token from every bucket covering
        it, or refuse it (nothing taken) if one of them is empty. Returns
        (allowed, the X-RateLimit-* headers of the answer)."""
        now = self._clock()
        covering = self._covering(groups)
        for live in covering:
            live.refill(now)
        empty = [live for live in covering if live.empty()]
        if empty:
            refusing = empty[0]
            refusing.stats.refused += 1
            return False, self._headers(refusing, now)
        for live in covering:
            live.tokens -= 1.0
            live.stats.taken += 1
        if not covering:
            return True, {
                "X-RateLimit-Limit": str(UNLIMITED_HEADER_VALUE),
                "X-RateLimit-Remaining": str(UNLIMITED_HEADER_VALUE),
                "X-RateLimit-Reset": str(int(math.ceil(now))),
            }
        # The answer speaks for the bucket closest to refusing the next request.
        return True, self._headers(min(covering, key=lambda live: live.tokens), now)

    def refusal_headers(self, groups: Iterable[str]) -> Dict[str, str]:
        """Headers for an injected 429 (fail_next): those of the bucket that
        covers the request if there is one, else a small empty bucket's."""
        now = self._clock()
        covering = self._covering(groups)
        for live in covering:
            live.refill(now)
        if covering:
            live = min(covering, key=lambda item: item.tokens)
            headers = self._headers(live, now)
            headers["X-RateLimit-Remaining"] = "0"
            return headers
        return {
            "X-RateLimit-Limit": "10",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(math.ceil(now + 1))),
        }

    def _headers(self, live: _Live, now: float) -> Dict[str, str]:
        wait = live.full_in() if self.reset == RESET_FULL else live.next_in()
        return {
            "X-RateLimit-Limit": str(live.spec.burst),
            "X-RateLimit-Remaining": str(live.remaining()),
            # Whole epoch seconds, rounded up: at that second the promise holds.
            "X-RateLimit-Reset": str(int(math.ceil(now + wait - 1e-9))),
        }
