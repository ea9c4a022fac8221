"""Auth0's rate limits, read from its answers: may a call of this kind go now?

Auth0 meters the Management API with token buckets (PLATFORM.md). A bucket
holds up to `X-RateLimit-Limit` requests and refills at a steady rate;
`X-RateLimit-Remaining` is what is left. Auth0's documents disagree on
`X-RateLimit-Reset`, an epoch second: the rate-limit policy says the bucket
is full again then, the rate-limit use cases say the next request comes
back then. Waiting for Reset is right under both; but where it means "full"
it waits for a whole refill when one request's worth would do. So the pacer
first reads Reset as "full", which gives the refill rate as
(limit - remaining) / (reset - now), and waits for one request's worth; if
that earns a 429, Reset means the next request, and for that bucket the
pacer waits for Reset from then on. At most one 429 per bucket to learn it.

Which kinds of call share a bucket is in no header: on paid plans log reads
and user calls have buckets of their own, on free tenants one bucket meters
everything. The pacer starts from one bucket per kind. When an answer shows
fewer requests left than that kind's own calls explain, or a 429 comes that
the estimate did not foresee, while our other kinds of call with the same
limit were drawing, those kinds are taken to share one bucket; when an
answer shows more left than a shared bucket could hold, the kind gets its own
again. The collector asks `shares()` to decide how to interleave log pages
with flag writes (see flags.py).

Pure: no sleeping, no I/O; the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional

# Auth0 rounds Reset to whole seconds and Remaining down to whole requests,
# so an estimate is good to about one request.
_SLACK = 1.0
# The rate an answer implies is a little high when our clock runs ahead of
# Auth0's: use a little less. (A slow answer does not inflate it: the rate is
# read from when the call was sent, before Auth0 computed its Reset.)
_RATE_MARGIN = 0.95
# When a bucket is empty and its refill rate is not known yet, wait for the
# reset, but never longer than this before trying again.
_UNKNOWN_RATE_WAIT = 60.0


@dataclass
class Bucket:
    """What the answers say about one of Auth0's token buckets."""

    limit: int
    tokens: float  # requests left at `seen`, as the last answer said
    seen: float  # epoch seconds of that answer
    spent: int = 0  # calls sent since that answer
    rate: Optional[float] = None  # refill, requests per second, if Reset means "full"; None until known
    reset: Optional[float] = None  # X-RateLimit-Reset of the last answer
    reset_means_full: bool = True  # until a 429 shows otherwise

    def tokens_at(self, now: float) -> float:
        """What the pacer counts on: the refill only while its rate is trusted
        (read from Reset as "full", it is never above the real one)."""
        if self.reset_means_full and self.rate:
            return min(float(self.limit), self.tokens + self.rate * max(0.0, now - self.seen)) - self.spent
        return self.tokens - self.spent  # never early

    def most_at(self, now: float) -> float:
        """As many as there could be, to tell buckets apart: no Auth0 bucket
        refills faster than a whole burst a second (nor than estimated)."""
        fastest = max(self.rate or 0.0, float(self.limit))
        return min(float(self.limit), self.tokens + fastest * max(0.0, now - self.seen)) - self.spent

    def wait(self, now: float) -> float:
        """Seconds until one request's worth of tokens is there."""
        missing = 1.0 - self.tokens_at(now)
        if missing <= 0:
            return 0.0
        if self.rate and self.reset_means_full:
            return missing / self.rate
        if self.reset is not None:
            return min(_UNKNOWN_RATE_WAIT, max(0.0, self.reset - now))
        return 1.0


@dataclass(frozen=True)
class Limits:
    """The X-RateLimit-* headers of one answer."""

    limit: int
    remaining: int
    reset: Optional[float]  # epoch seconds


def read_limits(headers: Mapping[str, str]) -> Optional[Limits]:
    """The three headers, or None when the answer has none (or odd ones)."""
    try:
        limit = int(float(headers.get("x-ratelimit-limit")))  # type: ignore[arg-type]
        remaining = int(float(headers.get("x-ratelimit-remaining")))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    try:
        reset: Optional[float] = float(headers.get("x-ratelimit-reset"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        reset = None
    if limit < 1:
        return None
    return Limits(limit, max(0, min(remaining, limit)), reset)


class Pacer:
    """Buckets per kind of call ("logs", "users_read", "users_write", "token")."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._bucket_of: Dict[str, Bucket] = {}
        self._calls = 0  # calls sent so far
        self._last_call: Dict[str, int] = {}  # kind -> number of its latest call
        self._last_answer: Dict[str, int] = {}  # kind -> calls sent when its latest answer came
        self._sent_at: Dict[str, float] = {}  # kind -> when its latest call was sent

    def wait(self, kind: str) -> float:
        """Seconds before a call of this kind may go (0: now)."""
        bucket = self._bucket_of.get(kind)
        return bucket.wait(self._clock()) if bucket else 0.0

    def spend(self, kind: str) -> None:
        """A call of this kind is about to go: it takes a token."""
        self._calls += 1
        self._last_call[kind] = self._calls
        self._sent_at[kind] = self._clock()
        bucket = self._bucket_of.get(kind)
        if bucket is not None:
            bucket.spent += 1

    def shares(self, kind: str, other: str) -> bool:
        """True when both kinds draw on one bucket, as far as the answers tell."""
        bucket = self._bucket_of.get(kind)
        return bucket is not None and bucket is self._bucket_of.get(other)

    def observe(self, kind: str, limits: Optional[Limits], throttled: bool = False) -> None:
        """Learn from the answer to the latest call of this kind (a 429 when throttled)."""
        if limits is None:
            return
        now = self._clock()
        bucket = self._bucket_of.get(kind)
        drawing = self._drawing_since_last_answer(kind, limits.limit)
        self._last_answer[kind] = self._calls
        if bucket is None or bucket.limit != limits.limit:
            bucket = self._own_bucket(kind, limits, now)
        elif limits.remaining > bucket.most_at(now) + _SLACK and self._is_shared(bucket):
            # More left than a bucket shared with our other calls could hold.
            bucket = self._own_bucket(kind, limits, now)
        elif drawing and (throttled or limits.remaining < bucket.tokens - bucket.spent - _SLACK):
            # Fewer left than this kind's own calls explain (refill aside), while
            # others drew: they share the bucket. Newly found, that explains a 429.
            newly = [other for other in drawing if self._bucket_of[other] is not bucket]
            bucket = self._share(kind, drawing)
            throttled = throttled and not newly
        self._update(bucket, limits, now, self._sent_at.get(kind, now), throttled)

    # -- internals ---------------------------------------------------------------
    def _drawing_since_last_answer(self, kind: str, limit: int) -> list:
        """Our other kinds with buckets of this limit that called since this kind's last answer."""
        since = self._last_answer.get(kind, 0)
        return [
            other
            for other, bucket in self._bucket_of.items()
            if other != kind and bucket.limit == limit and self._last_call.get(other, 0) > since
        ]

    def _is_shared(self, bucket: Bucket) -> bool:
        return sum(1 for other in self._bucket_of.values() if other is bucket) > 1

    def _share(self, kind: str, others: list) -> Bucket:
        bucket = self._bucket_of[others[0]]
        for other in [kind] + others[1:]:
            old = self._bucket_of[other]
            if old.rate and (bucket.rate is None or old.rate < bucket.rate):
                bucket.rate = old.rate  # the shared bucket refills no faster than either estimate said
            bucket.reset_means_full = bucket.reset_means_full and old.reset_means_full
            for name, value in list(self._bucket_of.items()):
                if value is old:
                    self._bucket_of[name] = bucket
        return bucket

    def _own_bucket(self, kind: str, limits: Limits, now: float) -> Bucket:
        old = self._bucket_of.get(kind)
        bucket = Bucket(limits.limit, float(limits.remaining), now)
        bucket.reset_means_full = (
            old.reset_means_full if old else all(other.reset_means_full for other in self._bucket_of.values())
        )
        self._bucket_of[kind] = bucket
        return bucket

    @staticmethod
    def _update(bucket: Bucket, limits: Limits, now: float, sent: float, unexplained_429: bool) -> None:
        bucket.tokens, bucket.seen, bucket.spent = float(limits.remaining), now, 0
        bucket.reset = limits.reset
        if unexplained_429:
            # We only send when the estimate says a token is there: a 429 no
            # sharing explains means Reset does not mean "full" here (or
            # another client drains the bucket). From now on, wait for Reset.
            bucket.reset_means_full = False
            return
        missing = limits.limit - limits.remaining
        if limits.reset is None or missing <= 0 or limits.remaining <= 0:
            return
        # Reset is a whole second, rounded up, computed by Auth0 after the call
        # was sent: the rate an answer implies is hardly ever above the real
        # one, and the largest is the most precise. Reading it from when the
        # answer came would take a slow answer's delay for a fast refill.
        implied = _RATE_MARGIN * missing / max(limits.reset - sent, 1e-3)
        if bucket.rate is None or implied > bucket.rate:
            bucket.rate = implied
