"""Pacing on Auth0's rate-limit headers (pacing.py), against simulated buckets.

The simulated bucket follows Auth0's documentation (PLATFORM.md, Auth0's
rate-limit policy): a token bucket of `limit` requests refilled at `rate`
per second; every answer carries X-RateLimit-Limit, X-RateLimit-Remaining
(whole requests left) and X-RateLimit-Reset (the epoch second, rounded up,
at which the bucket is full again); a request with no token left gets 429.
Time is simulated: nothing here sleeps.
"""

from __future__ import annotations

import math

import pytest

from ta_auth0.pacing import Bucket, Limits, Pacer, read_limits

LATENCY = 0.005  # seconds one call takes


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class SimBucket:
    """reset="full": Reset is when the bucket is full again (Auth0's rate-limit
    policy); reset="next": when the next request comes back (Auth0's
    rate-limit use cases). Both rounded up to the second."""

    def __init__(self, clock: Clock, limit: int, rate: float, reset: str = "full") -> None:
        self.clock, self.limit, self.rate, self.reset = clock, limit, rate, reset
        self.tokens, self.updated = float(limit), clock.now
        self.refused = 0

    def take(self) -> tuple:
        now = self.clock.now
        self.tokens = min(self.limit, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        ok = self.tokens >= 1.0
        if ok:
            self.tokens -= 1.0
        else:
            self.refused += 1
        if self.reset == "full":
            reset_in = (self.limit - self.tokens) / self.rate
        else:
            reset_in = max(0.0, 1.0 - (self.tokens - math.floor(self.tokens))) / self.rate
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(int(math.floor(self.tokens))),
            "x-ratelimit-reset": str(int(math.ceil(now + reset_in))),
        }
        return ok, headers


class Tenant:
    """Kinds of call mapped onto simulated buckets, and a pacer in front."""

    def __init__(self, buckets: dict, reset: str = "full") -> None:
        self.clock = Clock()
        made = {}
        self.bucket_of = {}
        for kind, (name, limit, rate) in buckets.items():
            if name not in made:
                made[name] = SimBucket(self.clock, limit, rate, reset)
            self.bucket_of[kind] = made[name]
        self.buckets = list(made.values())
        self.pacer = Pacer(self.clock)
        self.started = self.clock.now

    def call(self, kind: str) -> None:
        """One call as the Auth0 client makes it: wait, send, learn; a 429 is retried."""
        while True:
            self.clock.now += self.pacer.wait(kind)
            self.pacer.spend(kind)
            ok, headers = self.bucket_of[kind].take()
            self.clock.now += LATENCY
            self.pacer.observe(kind, read_limits(headers), throttled=not ok)
            if ok:
                return

    @property
    def elapsed(self) -> float:
        return self.clock.now - self.started

    @property
    def refused(self) -> int:
        return sum(bucket.refused for bucket in self.buckets)


def test_headers_are_read_and_odd_ones_ignored():
    assert read_limits({"x-ratelimit-limit": "10", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "17"}) == Limits(
        10, 3, 17.0
    )
    assert read_limits({}) is None
    assert read_limits({"x-ratelimit-limit": "ten", "x-ratelimit-remaining": "3"}) is None
    assert read_limits({"x-ratelimit-limit": "10", "x-ratelimit-remaining": "3"}) == Limits(10, 3, None)


@pytest.mark.parametrize("reset, refused", [("full", 0), ("next", 1)])
def test_a_burst_goes_at_once_then_the_refill_rate_is_kept(reset, refused):
    tenant = Tenant({"logs": ("logs", 10, 5.0)}, reset)
    for _ in range(110):
        tenant.call("logs")
    # 10 at once, then 100 at 5/s: 20 s is the floor. Where Reset means the
    # next request, the first early try (one 429) teaches the pacer so.
    assert tenant.refused == refused
    assert 20.0 <= tenant.elapsed <= 20.0 * 1.1


def test_an_empty_bucket_waits_for_one_request_not_a_full_refill():
    tenant = Tenant({"logs": ("logs", 10, 5.0)})
    for _ in range(12):
        tenant.call("logs")
    wait = tenant.pacer.wait("logs")
    assert 0.0 < wait <= 1.25 / 5.0  # one request at 5/s, with the pacer's margin; a full refill is 2 s


@pytest.mark.parametrize("reset", ["full", "next"])
def test_separate_buckets_are_kept_apart(reset):
    buckets = {"logs": ("logs", 10, 5.0), "users_read": ("users", 10, 10.0), "users_write": ("users", 10, 10.0)}
    tenant = Tenant(buckets, reset)
    for _ in range(30):
        tenant.call("logs")
        tenant.call("users_read")
        tenant.call("users_write")
        tenant.call("users_write")
    assert not tenant.pacer.shares("logs", "users_write")
    assert not tenant.pacer.shares("logs", "users_read")
    assert tenant.pacer.shares("users_read", "users_write")
    assert tenant.refused <= 2  # at most one per bucket


@pytest.mark.parametrize("reset", ["full", "next"])
def test_one_shared_bucket_is_found_and_costs_at_most_one_429(reset):
    buckets = {"logs": ("all", 10, 2.0), "users_read": ("all", 10, 2.0), "users_write": ("all", 10, 2.0)}
    tenant = Tenant(buckets, reset)
    calls = 0
    for _ in range(20):
        for kind in ("logs", "users_read", "users_write", "users_write"):
            tenant.call(kind)
            calls += 1
    assert tenant.pacer.shares("logs", "users_write")
    assert tenant.pacer.shares("logs", "users_read")
    assert tenant.refused <= 1
    floor = (calls - 10) / 2.0
    assert tenant.elapsed <= floor * 1.2


@pytest.mark.parametrize("alternate", [True, False])
def test_a_kind_wrongly_taken_as_shared_gets_its_own_bucket_back(alternate):
    # Same limit on both buckets: the pacer cannot tell from the first answers.
    tenant = Tenant({"logs": ("logs", 10, 5.0), "users_write": ("users", 10, 5.0)})
    for round_ in range(40):
        tenant.call("logs")
        if alternate or round_ % 3 == 0:
            tenant.call("users_write")
            tenant.call("users_write")
    assert not tenant.pacer.shares("logs", "users_write")


def test_a_429_from_a_bucket_drained_elsewhere_is_waited_out():
    tenant = Tenant({"logs": ("logs", 4, 1.0)})
    tenant.call("logs")
    # Another client empties the bucket behind our back.
    bucket = tenant.bucket_of["logs"]
    bucket.tokens = 0.0
    before, started = tenant.refused, tenant.clock.now
    tenant.call("logs")
    tenant.call("logs")
    assert tenant.refused - before == 1  # one 429, then it waited for the bucket instead of hammering
    assert tenant.clock.now - started >= 1.0  # a request's worth at 1/s had to come back first


def test_no_headers_no_waiting():
    pacer = Pacer(Clock())
    pacer.observe("logs", None)
    pacer.spend("logs")
    assert pacer.wait("logs") == 0.0


@pytest.mark.parametrize("reset, most_429s", [("full", 1), ("next", 2)])
def test_writes_fitted_into_a_shared_bucket_do_not_earn_a_429_each_refill(reset, most_429s):
    # The collector's pattern on a free tenant: a log page, then the flag
    # writes that can go at once. One bucket serves both.
    tenant = Tenant({"logs": ("all", 10, 10.0), "users_write": ("all", 10, 10.0)}, reset)
    calls = 0
    for _ in range(30):
        tenant.call("logs")
        calls += 1
        for _ in range(9):
            if tenant.pacer.wait("users_write") <= 0:
                tenant.call("users_write")
                calls += 1
    assert tenant.pacer.shares("logs", "users_write")
    # One 429 shows the bucket is shared; where Reset means the next request,
    # one more shows that.
    assert tenant.refused <= most_429s
    assert tenant.elapsed <= (calls - 10) / 10.0 * 1.2


# -- one bucket's arithmetic, by hand -------------------------------------------------


def test_a_bucket_counts_the_refill_only_while_reset_means_full():
    trusted = Bucket(limit=10, tokens=2.0, seen=100.0, spent=1, rate=2.0)
    assert trusted.tokens_at(101.5) == 4.0  # 2 + 1.5 s x 2/s, less the one sent
    assert trusted.tokens_at(200.0) == 9.0  # never above the limit
    assert trusted.tokens_at(99.0) == 1.0  # a clock that went back adds nothing
    doubted = Bucket(limit=10, tokens=2.0, seen=100.0, spent=1, rate=2.0, reset_means_full=False)
    assert doubted.tokens_at(150.0) == 1.0
    assert Bucket(limit=10, tokens=3.0, seen=100.0, spent=1).tokens_at(150.0) == 2.0


def test_the_most_a_bucket_could_hold_assumes_a_burst_a_second_at_least():
    assert Bucket(limit=10, tokens=2.0, seen=100.0, spent=1).most_at(100.2) == pytest.approx(3.0)
    assert Bucket(limit=10, tokens=2.0, seen=100.0, spent=1, rate=20.0).most_at(100.2) == pytest.approx(5.0)


def test_a_bucket_waits_for_one_requests_worth():
    assert Bucket(limit=10, tokens=1.0, seen=100.0, reset=105.0).wait(100.0) == 0.0  # exactly one left
    assert Bucket(limit=10, tokens=0.0, seen=100.0, rate=4.0).wait(100.0) == 0.25
    assert Bucket(limit=10, tokens=0.0, seen=100.0, reset=103.0).wait(100.0) == 3.0  # rate unknown: Reset
    assert Bucket(limit=10, tokens=0.0, seen=100.0, reset=99.0).wait(100.0) == 0.0  # Reset already past
    assert Bucket(limit=10, tokens=0.0, seen=100.0, reset=1e9).wait(100.0) == 60.0  # but never long
    assert Bucket(limit=10, tokens=0.0, seen=100.0).wait(100.0) == 1.0  # nothing known: a second


def test_a_limit_of_one_request_is_a_limit():
    headers = {"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000001"}
    assert read_limits(headers) == Limits(1, 0, 1_800_000_001.0)


def test_every_call_sent_takes_a_token():
    clock = Clock()
    pacer = Pacer(clock)
    pacer.observe("logs", Limits(10, 2, clock.now + 100))
    pacer.spend("logs")
    assert pacer.wait("logs") == 0.0
    pacer.spend("logs")
    assert pacer.wait("logs") > 0.0


def test_an_answer_that_is_not_a_429_keeps_reset_as_full():
    clock = Clock()
    pacer = Pacer(clock)
    pacer.observe("logs", Limits(10, 1, clock.now + 10))
    pacer.spend("logs")
    # 9 requests back in 10 s (less a margin): the next in about a second, not at Reset.
    assert pacer.wait("logs") == pytest.approx(1 / (0.95 * 9 / 10))


# -- what one answer teaches, call by call ---------------------------------------------
# The client sends one call at a time: spend, then the answer's observe.


def answered(pacer, kind, limits, throttled=False):
    pacer.spend(kind)
    pacer.observe(kind, limits, throttled)


def two_kinds_with_one_limit(clock):
    """logs and users_write, each first answered with the limit 10: one bucket each."""
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, 9, clock.now + 1))
    answered(pacer, "users_write", Limits(10, 8, clock.now + 2))
    assert not pacer.shares("logs", "users_write")
    return pacer


def empty(pacer, kind, left):
    for _ in range(left):
        pacer.spend(kind)


def test_one_request_fewer_than_a_kinds_own_calls_explain_is_rounding_two_is_sharing():
    clock = Clock()
    pacer = two_kinds_with_one_limit(clock)
    answered(pacer, "logs", Limits(10, 7, clock.now + 3))  # 9 less this call: 8 expected, 7 is within a request
    assert not pacer.shares("logs", "users_write")
    clock = Clock()
    pacer = two_kinds_with_one_limit(clock)
    answered(pacer, "logs", Limits(10, 6, clock.now + 3))
    assert pacer.shares("logs", "users_write")


def test_a_shared_bucket_is_left_only_for_more_than_one_request_above_what_it_could_hold():
    clock = Clock()
    pacer = two_kinds_with_one_limit(clock)
    answered(pacer, "logs", Limits(10, 6, clock.now + 3))
    assert pacer.shares("logs", "users_write")
    answered(pacer, "logs", Limits(10, 6, clock.now + 3))  # 6 less this call could be 5: within a request
    assert pacer.shares("logs", "users_write")
    answered(pacer, "logs", Limits(10, 7, clock.now + 3))  # 6 less this call: 5, and 7 is left
    assert not pacer.shares("logs", "users_write")


def test_a_429_that_sharing_explains_keeps_reset_as_full():
    clock = Clock()
    pacer = two_kinds_with_one_limit(clock)
    answered(pacer, "logs", Limits(10, 0, clock.now + 10), throttled=True)
    assert pacer.shares("logs", "users_write")
    # Both kinds' answers gave 0.95 requests a second: the next in about a second, not at Reset.
    assert pacer.wait("logs") == pytest.approx(1 / 0.95)


def test_fewer_left_in_a_bucket_already_shared_is_not_taken_for_a_429():
    clock = Clock()
    pacer = two_kinds_with_one_limit(clock)
    answered(pacer, "logs", Limits(10, 6, clock.now + 3))
    answered(pacer, "users_write", Limits(10, 5, clock.now + 3))
    answered(pacer, "logs", Limits(10, 2, clock.now + 4))  # others drew again: fewer, but nothing new
    empty(pacer, "logs", 2)
    assert pacer.wait("logs") == pytest.approx(1 / (0.95 * 8 / 4))  # the refill rate, not Reset's 4 s


@pytest.mark.parametrize("learned", ["first", "second"])
def test_a_shared_bucket_keeps_the_refill_rate_either_kind_learned(learned):
    clock = Clock()
    pacer = Pacer(clock)
    # A full bucket teaches no rate; 4 of 10 back in 2 s: 1.9/s.
    first, second = (Limits(10, 6, clock.now + 2), Limits(10, 10, clock.now + 1))[:: 1 if learned == "first" else -1]
    answered(pacer, "logs", first)
    answered(pacer, "users_write", second)
    answered(pacer, "logs", Limits(10, 0, clock.now + 30), throttled=True)  # an empty bucket teaches none
    assert pacer.shares("logs", "users_write")
    assert pacer.wait("logs") == pytest.approx(1 / 1.9)


@pytest.mark.parametrize("slower", ["first", "second"])
def test_a_shared_bucket_refills_no_faster_than_the_slower_estimate(slower):
    clock = Clock()
    pacer = Pacer(clock)
    slow, fast = Limits(10, 9, clock.now + 2), Limits(10, 8, clock.now + 1)  # 0.475/s, 1.9/s
    answered(pacer, "logs", slow if slower == "first" else fast)
    answered(pacer, "users_write", fast if slower == "first" else slow)
    answered(pacer, "logs", Limits(10, 0, clock.now + 30), throttled=True)
    assert pacer.shares("logs", "users_write")
    assert pacer.wait("logs") == pytest.approx(1 / 0.475)


def test_a_shared_bucket_waits_for_reset_if_either_kind_learned_that_reset_is_the_next_request():
    clock = Clock()
    pacer = two_kinds_with_one_limit(clock)
    answered(pacer, "users_write", Limits(10, 0, clock.now + 5), throttled=True)  # alone: unexplained
    answered(pacer, "logs", Limits(10, 0, clock.now + 7), throttled=True)  # users_write drew: shared
    assert pacer.shares("logs", "users_write")
    assert pacer.wait("logs") == 7.0


def test_three_kinds_drawing_on_one_bucket_are_all_found_at_once():
    clock = Clock()
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, 9, clock.now + 1))
    answered(pacer, "users_read", Limits(10, 8, clock.now + 2))
    answered(pacer, "users_write", Limits(10, 7, clock.now + 3))
    answered(pacer, "logs", Limits(10, 4, clock.now + 6))
    assert pacer.shares("logs", "users_read") and pacer.shares("logs", "users_write")


def test_a_kind_whose_limit_changes_keeps_what_it_learned_of_reset_not_what_another_kind_did():
    clock = Clock()
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, 9, clock.now + 1))
    answered(pacer, "users_write", Limits(5, 0, clock.now + 5), throttled=True)  # Reset means the next request
    answered(pacer, "logs", Limits(20, 19, clock.now + 2))  # another limit: a bucket of its own
    empty(pacer, "logs", 19)
    assert pacer.wait("logs") == pytest.approx(1 / 0.475)  # its rate from Reset as "full", not Reset itself


def test_an_empty_bucket_teaches_no_rate_and_waits_for_reset():
    clock = Clock()
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, 0, clock.now + 3))
    assert pacer.wait("logs") == 3.0


def test_an_answer_without_reset_teaches_no_rate():
    clock = Clock()
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, 5, None))
    empty(pacer, "logs", 5)
    assert pacer.wait("logs") == 1.0  # nothing known: try again in a second


@pytest.mark.parametrize("left, reset_in, rate", [(9, 4.0, 0.95 / 4), (8, 0.5, 0.95 * 2 / 0.5)])
def test_the_refill_rate_is_read_from_every_answer_that_is_not_full(left, reset_in, rate):
    clock = Clock()
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, left, clock.now + reset_in))
    empty(pacer, "logs", left)
    assert pacer.wait("logs") == pytest.approx(1 / rate)


def test_a_bucket_of_its_own_keeps_its_rate_when_an_answer_shows_more_left_than_expected():
    clock = Clock()
    pacer = Pacer(clock)
    answered(pacer, "logs", Limits(10, 2, clock.now + 1))  # 7.6/s
    answered(pacer, "logs", Limits(10, 9, clock.now + 10))  # 9 where 1 was expected: 0.095/s implied
    empty(pacer, "logs", 9)
    assert pacer.wait("logs") == pytest.approx(1 / 7.6)


def test_a_slow_answer_is_not_taken_for_a_fast_refill():
    clock = Clock()
    pacer = Pacer(clock)
    reset = clock.now + 1  # Auth0: one request back within the second after the call
    pacer.spend("logs")
    clock.now += 0.9  # the answer took 0.9 s to arrive (a loaded machine, a slow proxy)
    pacer.observe("logs", Limits(10, 9, reset))
    empty(pacer, "logs", 9)
    assert pacer.wait("logs") == pytest.approx(1 / 0.95)  # not 0.1 s: 9.5 requests a second
