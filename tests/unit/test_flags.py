"""Flag writes fitted around the log reads (SPEC §5.3, §5.5, §7), against a
stand-in for the Auth0 client: what goes when, what a failure pauses, what
stays queued. The real client's pacing and HTTP are the end-to-end tests'."""

from __future__ import annotations

import logging
import time

import pytest

from ta_auth0.auth0_api import Auth0RequestError, Auth0Unavailable, RateLimited, UserNotFound
from ta_auth0.flags import FlagWriter
from ta_auth0.state import StateStore
from tests.unit.logs import logged, messages


class Users:
    """set_user_flag as Auth0 would answer it: `answers` maps a user to the error raised for them."""

    def __init__(self, answers=None, wait=0.0, shared=False):
        self.answers = dict(answers or {})
        self.wait = wait
        self.shared = shared
        self.writes = []  # (user, flag, patient)

    def wait_for(self, kind):
        assert kind == "users_write"
        return self.wait

    def shares_bucket(self, one, other):
        assert (one, other) == ("logs", "users_write")
        return self.shared

    def set_user_flag(self, uid, flag, patient=True):
        self.writes.append((uid, flag, patient))
        error = self.answers.get(uid)
        if error is not None:
            raise error


@pytest.fixture
def state(tmp_path):
    with StateStore(str(tmp_path / "state.sqlite")) as store:
        yield store


def queue(state, *users):
    for user in users:  # one commit each: queued_at orders them as given
        state.commit_page(None, [user], [user])


def writer(state, api, deadline=60.0):
    return FlagWriter(state, api, "signedUp", time.monotonic() + deadline)


def test_drain_writes_every_queued_flag_oldest_first_and_forgets_them(state):
    queue(state, "u1", "u2", "u3")
    api = Users()
    flags = writer(state, api)
    flags.drain(patient=True)
    assert api.writes == [("u1", "signedUp", True), ("u2", "signedUp", True), ("u3", "signedUp", True)]
    assert flags.stats.done == 3 and flags.stats.skipped == 0 and state.pending_count() == 0


def test_drain_stops_at_its_limit_and_at_the_runs_deadline(state):
    queue(state, "u1", "u2", "u3")
    api = Users()
    writer(state, api).drain(limit=2, patient=True)
    assert [uid for uid, _, _ in api.writes] == ["u1", "u2"] and state.pending_flags() == ["u3"]
    writer(state, api, deadline=-1).drain(patient=True)
    assert state.pending_flags() == ["u3"]


def test_a_user_deleted_since_is_skipped_and_named(state):
    queue(state, "gone", "u2", "gone too")
    api = Users({"gone": UserNotFound("404"), "gone too": UserNotFound("404")})
    flags = writer(state, api)
    with logged() as records:
        flags.drain(patient=True)
    assert flags.stats.skipped == 2 and flags.stats.done == 1 and state.pending_count() == 0
    assert "user gone was deleted from Auth0 since its event: flag write skipped" in messages(records)
    assert "user gone too was deleted from Auth0 since its event: flag write skipped" in messages(records)


@pytest.mark.parametrize(
    "error, level",
    [
        (Auth0Unavailable("Auth0 answered 503"), logging.WARNING),
        (RateLimited("Auth0 rate limit (429)"), logging.WARNING),
        (Auth0RequestError("Auth0 answered 400 bad_request", 400, "bad_request"), logging.ERROR),
    ],
)
def test_a_failed_write_pauses_the_writes_for_the_run_and_keeps_them_queued(state, error, level):
    queue(state, "u1", "u2")
    api = Users({"u1": error})
    flags = writer(state, api)
    with logged() as records:
        flags.drain(patient=True)
        flags.drain(patient=True)  # paused: nothing more this run
        assert flags.write_one_now() == float("inf")
    assert api.writes == [("u1", "signedUp", True)]
    assert state.pending_flags() == ["u1", "u2"] and flags.stats.done == 0
    assert state.all_pending_flags()[0].attempts == 1 and state.all_pending_flags()[0].last_error == str(error)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (level, f"flag writes paused for this run, 2 kept for the next: {error}")
    ]


def test_an_impatient_write_that_meets_a_rate_limit_just_stops_for_now(state):
    queue(state, "u1", "u2")
    api = Users({"u1": RateLimited("429")})
    flags = writer(state, api)
    flags.drain(patient=False)
    assert state.all_pending_flags()[0].attempts == 0  # not a failure: it goes later
    del api.answers["u1"]
    flags.drain(patient=True)
    assert [uid for uid, _, _ in api.writes] == ["u1", "u1", "u2"] and state.pending_count() == 0


def test_idle_work_writes_one_flag_when_its_bucket_has_room(state):
    queue(state, "u1", "u2")
    api = Users()
    flags = writer(state, api)
    assert flags.write_one_now() == 0.0
    assert api.writes == [("u1", "signedUp", False)] and state.pending_flags() == ["u2"]
    api.wait = 2.5
    assert flags.write_one_now() == 2.5 and len(api.writes) == 1  # no room: says when
    api.wait = 0.25
    assert flags.write_one_now() == 0.25 and len(api.writes) == 1  # a quarter second is not room either
    api.wait = 0.0
    assert flags.write_one_now() == 0.0
    assert flags.write_one_now() == float("inf")  # nothing left


@pytest.mark.parametrize(
    "error",
    [RateLimited("429"), Auth0Unavailable("Auth0 answered 503"), Auth0RequestError("Auth0 answered 400", 400, "x")],
)
def test_idle_work_that_fails_says_there_is_nothing_to_do_now(state, error):
    queue(state, "u1")
    flags = writer(state, Users({"u1": error}))
    assert flags.write_one_now() == float("inf")
    assert state.pending_flags() == ["u1"]


def test_after_a_page_separate_buckets_write_what_can_go_now(state):
    queue(state, "u1", "u2", "u3")
    api = Users({"u2": RateLimited("429")})
    writer(state, api).after_page(queued=1)
    assert api.writes == [("u1", "signedUp", False), ("u2", "signedUp", False)]


def test_after_a_page_a_shared_bucket_writes_the_pages_share_and_one_more_waiting_for_them(state):
    queue(state, "u1", "u2", "u3", "u4")
    api = Users(shared=True)
    writer(state, api).after_page(queued=2)
    assert api.writes == [("u1", "signedUp", True), ("u2", "signedUp", True), ("u3", "signedUp", True)]
    assert state.pending_flags() == ["u4"]
