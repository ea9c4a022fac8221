"""The collector's bookkeeping over pages, with a stand-in for the Auth0 side.

The end-to-end tests drive the collector through the real Auth0 client and
the fake tenant; these give it pages the tenant cannot easily produce (no
log_id at all, no dates, a refused checkpoint with odd retained logs) and
read what it counted. The state is the real sqlite store, the events go
through the real stream writer."""

from __future__ import annotations

import io
import logging
import time
from datetime import datetime, timezone

import pytest

from ta_auth0 import collector
from ta_auth0.auth0_api import Auth0RequestError, Auth0Unavailable, CheckpointExpired, UserNotFound
from ta_auth0.collector import Collector
from ta_auth0.config import parse_config
from ta_auth0.state import Checkpoint, StateStore
from ta_auth0.stream import EventStream
from ta_auth0.transport import LogPage


class Tenant:
    """Answers the collector's calls from lists; records nothing else."""

    def __init__(self, pages=(), oldest=(), newest=None, gone=()):
        self.pages = [LogPage(page) for page in pages]  # what logs_after returns, in turn
        self.oldest = LogPage(oldest)
        self.newest = newest
        self.gone = set(gone)
        self.idle_work = None
        self.expired = False  # logs_after raises CheckpointExpired once

    def logs_after(self, log_id):
        if self.expired:
            self.expired = False
            raise CheckpointExpired(f"400 invalid from={log_id}")
        return self.pages.pop(0) if self.pages else LogPage()

    def oldest_logs(self, since=None):
        return self.oldest

    def newest_log(self):
        return self.newest

    def user_flag(self, uid, flag):
        if uid in self.gone:
            raise UserNotFound(uid)
        return None


def login(n, user, date="2026-11-20T10:00:00.000Z", count=None, **extra):
    entry = {"log_id": f"{n:06d}", "date": date, "type": "s", "user_id": user}
    if count is not None:
        entry["details"] = {"prompts": [{"name": "login", "stats": {"loginsCount": count}}]}
    entry.update(extra)
    return entry


@pytest.fixture
def state(tmp_path):
    with StateStore(str(tmp_path / "state.sqlite")) as store:
        store.commit_page(Checkpoint("000000", "2026-11-20T09:00:00.000Z"))
        yield store


def run(state, tenant, **params):
    config = parse_config(
        "auth0_activity://unit",
        dict({"domain": "t.auth0.com", "client_id": "cid", "client_secret": "s", "update_metadata": "false"}, **params),
    )
    out = io.BytesIO()
    writer = EventStream(out).writer("auth0_activity://unit", "auth0", "h", None)
    stats = Collector(config, state, tenant, writer, time.monotonic() + 60).run()
    return stats, out.getvalue().decode()


def full_page(first, count=1, **fields):
    """A full page (100 logs): a new user's first login on each of the first `count`, then repeats."""
    return [login(first + i, f"auth0|{first + i if i < count else first}", count=1, **fields) for i in range(100)]


def test_signups_and_logins_are_counted_over_every_page(state):
    pages = [full_page(1, count=3), full_page(101, count=2), [login(201, "auth0|201", count=1)]]
    stats, _ = run(state, Tenant(pages))
    assert (stats.signups, stats.logins, stats.logs_read, stats.events_written) == (6, 195, 201, 201)
    assert stats.last_log_id == "000201" and stats.caught_up


def test_a_page_without_any_log_id_is_written_then_stops_the_run_at_the_checkpoint(state):
    tenant = Tenant([[{"type": "s", "user_id": "auth0|1", "date": "2026-11-20T10:00:00.000Z"}]])
    with pytest.raises(Auth0Unavailable, match="page of logs without log_id: cannot move the checkpoint"):
        run(state, tenant)
    assert state.checkpoint() == Checkpoint("000000", "2026-11-20T09:00:00.000Z")


def test_the_newest_log_date_is_the_newest_of_every_page_whatever_their_order(state):
    pages = [
        full_page(1, date="2026-11-20T10:00:00.000Z"),
        [login(101, "auth0|1", date=None), login(102, "auth0|1", date="2026-11-20T12:00:00.000Z")],
    ]
    stats, _ = run(state, Tenant(pages))
    assert stats.newest_log_date == "2026-11-20T12:00:00.000Z"
    # A later page of older or undated logs keeps it.
    stats, _ = run(state, Tenant([full_page(201, date="2026-11-20T11:00:00.000Z"), [login(301, "auth0|1", date=None)]]))
    assert stats.newest_log_date == "2026-11-20T11:00:00.000Z"


def test_a_user_gone_from_auth0_is_named_in_the_log_and_classified_by_its_log(state, caplog):
    tenant = Tenant([[login(1, "auth0|gone")]], gone={"auth0|gone"})
    with caplog.at_level(logging.INFO, logger="ta_auth0"):
        stats, _ = run(state, tenant)
    assert "user auth0|gone no longer exists in Auth0: classified by its log alone" in caplog.messages
    assert stats.signups == 1


def test_with_update_metadata_false_no_flag_write_is_queued(state):
    run(state, Tenant([[login(1, "auth0|new", count=1), login(2, "auth0|old", count=4)]]))
    assert state.known_users(["auth0|new", "auth0|old"]) == {"auth0|new", "auth0|old"}
    assert state.pending_count() == 0


@pytest.mark.parametrize(
    "oldest",
    [
        [],  # nothing retained at all
        [login(500, "auth0|1", date=None)],  # a retained log without a date
        [login(500, "auth0|1", date="2026-11-20T08:00:00.000Z")],  # older than the checkpoint: still retained
        [{"type": "s", "date": "2026-11-20T10:00:00.000Z"}],  # no log_id to restart from
    ],
)
def test_a_refused_checkpoint_that_retention_does_not_explain_stops_the_run(state, oldest):
    tenant = Tenant(oldest=oldest)
    tenant.expired = True
    with pytest.raises(Auth0RequestError, match="refused to read logs after the checkpoint log_id 000000"):
        run(state, tenant)
    assert state.checkpoint().log_id == "000000"


def test_a_refused_checkpoint_older_than_retention_restarts_from_the_oldest_log(state):
    tenant = Tenant(oldest=[login(900, "auth0|1", date="2026-11-20T10:00:00.000Z")])
    tenant.expired = True
    stats, _ = run(state, tenant)
    assert state.checkpoint() == Checkpoint("000900", "2026-11-20T10:00:00.000Z") and stats.logs_read == 1


def test_a_start_date_is_written_in_auth0s_format_in_utc_whatever_the_machines_zone(local_time_zone_new_york):
    moment = datetime(2026, 11, 20, 23, 30, 5, 123456, tzinfo=timezone.utc)
    assert collector._iso(moment) == "2026-11-20T23:30:05.123Z"
