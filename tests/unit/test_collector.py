"""The collector's bookkeeping over pages, with a stand-in for the Auth0 side.

The end-to-end tests drive the collector through the real Auth0 client and
the fake tenant; these give it pages the tenant cannot easily produce (no
log_id at all, no dates, a refused checkpoint with odd retained logs) and
read what it counted. The state is the real sqlite store, the events go
through the real stream writer."""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone

import pytest

from ta_auth0 import collector
from ta_auth0.auth0_api import Auth0RequestError, Auth0Unavailable, CheckpointExpired, RateLimited, UserNotFound
from ta_auth0.collector import Collector
from ta_auth0.config import parse_config
from ta_auth0.state import Checkpoint, StateStore
from ta_auth0.stream import EventStream
from ta_auth0.transport import LogPage
from tests.addon import parse_stream
from tests.unit.logs import logged, messages


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


def run(state, tenant, seconds=60.0, collector_options=None, **params):
    """One run of an input with these parameters; `collector_options`: the
    Collector's own (heartbeat, ran_before), its defaults when not given."""
    config = parse_config(
        "auth0_activity://unit",
        dict({"domain": "t.auth0.com", "client_id": "cid", "client_secret": "s", "update_metadata": "false"}, **params),
    )
    out = io.BytesIO()
    stream = EventStream(out)
    writer = stream.writer("auth0_activity://unit", "auth0", "h", None)
    stats = Collector(config, state, tenant, writer, time.monotonic() + seconds, **(collector_options or {})).run()
    stream.close()
    return stats, out.getvalue().decode()


def full_page(first, count=1, **fields):
    """A full page (100 logs): a new user's first login on each of the first `count`, then repeats."""
    return [login(first + i, f"auth0|{first + i if i < count else first}", count=1, **fields) for i in range(100)]


def test_signups_and_logins_are_counted_over_every_page(state):
    pages = [full_page(1, count=3), full_page(101, count=2), [login(201, "auth0|201", count=1)]]
    stats, _ = run(state, Tenant(pages))
    assert (stats.signups, stats.logins, stats.logs_read, stats.events_written) == (6, 195, 201, 201)
    assert stats.last_log_id == "000201" and stats.caught_up


def test_a_page_without_any_log_id_stops_the_run_and_leaves_the_checkpoint(state):
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


def test_a_user_gone_from_auth0_is_named_in_the_log_and_classified_by_its_log(state):
    tenant = Tenant([[login(1, "auth0|gone")]], gone={"auth0|gone"})
    with logged() as records:
        stats, _ = run(state, tenant)
    assert "user auth0|gone no longer exists in Auth0: classified by its log alone" in messages(records)
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
    with pytest.raises(Auth0RequestError) as caught:
        run(state, tenant)
    assert str(caught.value) == (
        "Auth0 refused to read logs after the checkpoint log_id 000000 (400 invalid from=000000), "
        "and the checkpoint is still within the tenant's retention"
    )
    assert state.checkpoint().log_id == "000000"


def test_a_refused_checkpoint_older_than_retention_restarts_from_the_oldest_log(state):
    tenant = Tenant(oldest=[login(900, "auth0|1", date="2026-11-20T10:00:00.000Z")])
    tenant.expired = True
    stats, _ = run(state, tenant)
    assert state.checkpoint() == Checkpoint("000900", "2026-11-20T10:00:00.000Z") and stats.logs_read == 1


def test_after_the_retention_gap_the_restart_is_from_the_smallest_log_id_of_the_oldest_and_says_what_is_lost(state):
    # The oldest logs by date, their log_ids out of date order: a log written
    # a little later got the smaller log_id, and reading by checkpoint starts there.
    oldest = [
        login(905, "auth0|1", date="2026-11-20T09:30:00.250Z"),
        login(1000, "auth0|2", date="2026-11-20T09:30:00.500Z"),
        login(903, "auth0|3", date="2026-11-20T09:30:01.000Z"),
    ]
    after = [login(906, "auth0|5", date="2026-11-20T09:31:00.000Z")]
    tenant = Tenant([after], oldest=oldest)
    tenant.expired = True
    with logged() as records:
        stats, out = run(state, tenant)
    assert [e.data["log_id"] for e in parse_stream(out)] == ["000903", "000906"]  # and the pages after it
    assert state.checkpoint().log_id == "000906"
    (warning,) = messages(records)
    assert (
        "checkpoint log_id 000000 (2026-11-20T09:00:00.000Z) has fallen out of Auth0's log retention: logs from "
        "2026-11-20T09:00:00.000Z to 2026-11-20T09:30:00.250Z are lost for good"
    ) in warning
    assert warning.endswith("restarting from the oldest retained log 000903")


def test_a_start_date_is_written_in_auth0s_format_in_utc_whatever_the_machines_zone(local_time_zone_new_york):
    moment = datetime(2026, 11, 20, 23, 30, 5, 123456, tzinfo=timezone.utc)
    assert collector._iso(moment) == "2026-11-20T23:30:05.123Z"


class FlaggingTenant(Tenant):
    """And flag writes: each recorded with whether it may wait for the rate limit."""

    def __init__(self, *args, shared_bucket=False, bucket_empty=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared = shared_bucket
        self.bucket_empty = bucket_empty  # a write that may not wait meets a rate limit
        self.writes = []  # (user, flag, patient)
        self.idle_work_seen = []  # the idle work in place while logs were read

    def logs_after(self, log_id):
        self.idle_work_seen.append(self.idle_work)
        return super().logs_after(log_id)

    def shares_bucket(self, one, other):
        return self.shared

    def wait_for(self, kind):
        return 0.0

    def set_user_flag(self, uid, flag, patient):
        self.writes.append((uid, flag, patient))
        if self.bucket_empty and not patient:
            raise RateLimited("Auth0 rate limit (429) on users_write; deferred")


def test_leftover_flags_go_first_without_waiting_and_the_rest_may_wait_after_the_logs(state):
    state.commit_page(None, ["auth0|left"], ["auth0|left"])  # queued by an earlier run
    tenant = FlaggingTenant([[login(1, "auth0|new", count=1)]])
    stats, _ = run(state, tenant, update_metadata="true", metadata_flag="seen")
    assert tenant.writes == [("auth0|left", "seen", False), ("auth0|new", "seen", False)]
    assert stats.flag_writes_done == 2 and state.pending_count() == 0
    # While logs were read, flag writes were the client's idle work; after the run, nothing is.
    assert all(work is not None for work in tenant.idle_work_seen) and tenant.idle_work is None


def test_on_a_shared_bucket_each_page_is_followed_by_its_own_flag_writes(state):
    tenant = FlaggingTenant([full_page(1, count=2), [login(101, "auth0|101", count=1)]], shared_bucket=True)
    run(state, tenant, update_metadata="true")
    assert [uid for uid, _, _ in tenant.writes] == ["auth0|1", "auth0|2", "auth0|101"]
    assert all(patient for _, _, patient in tenant.writes)


def test_the_heartbeat_runs_before_every_page_and_can_stop_the_run(state):
    beats = []

    def heartbeat():
        beats.append(state.checkpoint().log_id)
        if len(beats) == 2:
            raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        run(state, Tenant([full_page(1), full_page(101)]), collector_options={"heartbeat": heartbeat})
    assert beats == ["000000", "000100"] and state.checkpoint().log_id == "000100"


def test_a_new_input_says_where_it_starts(tmp_path):
    with StateStore(str(tmp_path / "new.sqlite")) as fresh, logged() as records:
        tenant = Tenant(oldest=[login(7, "auth0|1", date="2026-11-20T10:00:00.000Z")])
        run(fresh, tenant)
        assert "new input: starting at log_id 000007 of 2026-11-20T10:00:00.000Z (start_from=oldest)" in messages(
            records
        )
        assert not [line for line in messages(records) if "run before" in line]  # a new input, not a lost state
    with StateStore(str(tmp_path / "empty.sqlite")) as fresh, logged() as records:
        stats, _ = run(fresh, Tenant(), start_from="2026-11-20")
        assert "new input: starting at no log yet (start_from=2026-11-20T00:00:00.000Z)" in messages(records)
        assert stats.caught_up and fresh.start_date() == "2026-11-20T00:00:00.000Z"


def test_a_new_input_from_a_date_asks_for_the_logs_since_that_date(tmp_path):
    class Since(Tenant):
        def oldest_logs(self, since=None):
            self.since = since
            return super().oldest_logs(since)

    tenant = Since(oldest=[login(7, "auth0|1", date="2026-11-21T10:00:00.000Z")])
    with StateStore(str(tmp_path / "new.sqlite")) as fresh:
        stats, _ = run(fresh, tenant, start_from="2026-11-21T09:00:00+01:00")
    assert tenant.since == "2026-11-21T08:00:00.000Z" and stats.logs_read == 1


def test_an_empty_page_after_a_full_one_means_caught_up(state):
    stats, _ = run(state, Tenant([full_page(1), []]))
    assert stats.caught_up and stats.logs_read == 100


def test_a_run_out_of_time_says_where_the_next_goes_on(state):
    with logged() as records:
        stats, _ = run(state, Tenant([full_page(1)]), seconds=-1)
    assert "time budget of 600s spent: continuing from log_id 000000 next interval" in messages(records)
    assert not stats.caught_up and stats.logs_read == 0


def test_the_lag_is_now_minus_the_newest_log_read():
    from ta_auth0.collector import RunStats

    newest = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc).timestamp()
    assert RunStats(newest_log_date="2026-11-20T10:00:00.000Z").lag_seconds(newest + 90.5) == 90.5
    assert RunStats(newest_log_date="2026-11-20T10:00:00.000Z").lag_seconds(newest - 5) == 0.0  # clock skew
    assert RunStats().lag_seconds(newest) is None


def test_an_input_that_ran_before_and_lost_its_state_goes_on_after_the_newest_log_and_says_what_may_be_missing(
    tmp_path,
):
    newest = login(9000, "auth0|1", date="2026-11-20T10:00:00.000Z")
    with StateStore(str(tmp_path / "wiped.sqlite")) as wiped, logged() as records:
        stats, events = run(wiped, Tenant(newest=newest), collector_options={"ran_before": True})
        assert wiped.checkpoint() == Checkpoint("009000", "2026-11-20T10:00:00.000Z")
    assert stats.last_log_id == "009000" and stats.logs_read == 0 and "<event" not in events
    (line,) = [line for line in messages(records) if "has run before" in line]
    assert line.startswith(
        "this input has run before but found no state (checkpoint file wiped, or the input moved to another "
        "search head; on a search head cluster or Splunk Cloud use state_store = kvstore): to send nothing "
        "twice it goes on after the newest log, log_id 009000 of 2026-11-20T10:00:00.000Z. Logs from the "
        "newest event of this input in Splunk up to 2026-11-20T10:00:00.000Z may be missing: find where they "
        "stop with `sourcetype=auth0_activity host=t.auth0.com | stats max(_time)`;"
    )
    assert line.endswith("disabled once it reaches 2026-11-20T10:00:00.000Z, fills the gap")


def test_an_input_that_ran_before_on_a_tenant_without_logs_starts_afresh_and_says_so(tmp_path):
    with StateStore(str(tmp_path / "wiped.sqlite")) as wiped, logged() as records:
        stats, _ = run(wiped, Tenant(), collector_options={"ran_before": True}, start_from="2026-11-20")
        assert wiped.start_date() == "2026-11-20T00:00:00.000Z" and stats.caught_up
    assert "this input has run before but its state is gone, and the tenant has no log: starting afresh" in messages(
        records
    )


def test_flags_the_rate_limit_held_back_go_after_the_last_page_waiting_as_needed(state):
    tenant = FlaggingTenant([[login(1, "auth0|new", count=1)]], bucket_empty=True)
    stats, _ = run(state, tenant, update_metadata="true")
    assert tenant.writes[-1] == ("auth0|new", "signedUp", True)
    assert stats.flag_writes_done == 1 and state.pending_count() == 0


class FlagReadingTenant(FlaggingTenant):
    """And flag reads: `flags` maps a user to the flag Auth0 holds; each read recorded."""

    def __init__(self, *args, flags=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.flags = dict(flags or {})
        self.reads = []

    def user_flag(self, uid, flag):
        self.reads.append((uid, flag))
        super().user_flag(uid, flag)
        return self.flags.get(uid)


def test_one_page_of_every_kind_of_user_gets_the_rule_s_messages_reads_and_flag_writes(state):
    state.commit_page(None, ["auth0|seen"], [])  # an event of an earlier run
    page = [
        {"log_id": "000001", "date": "2026-11-20T10:00:01.000Z", "type": "ss", "user_id": "auth0|new"},
        login(2, "auth0|new", date="2026-11-20T10:00:02.000Z"),  # after its signup in this page
        login(3, "auth0|flagged", date="2026-11-20T10:00:03.000Z"),  # flag true in Auth0
        login(4, "auth0|unflagged", date="2026-11-20T10:00:04.000Z"),  # no flag
        login(5, "auth0|gone", date="2026-11-20T10:00:05.000Z"),  # deleted since
        {"log_id": "000006", "date": "2026-11-20T10:00:06.000Z", "type": "f", "user_id": "auth0|failed"},
        login(7, "auth0|counted", date="2026-11-20T10:00:07.000Z", count=5),  # its log says: not the first
        login(8, "auth0|seen", date="2026-11-20T10:00:08.000Z"),
    ]
    tenant = FlagReadingTenant([page], flags={"auth0|flagged": True}, gone={"auth0|gone"})
    stats, out = run(state, tenant, update_metadata="true", metadata_flag="wasHere", collect="all")
    events = parse_stream(out)
    assert [(e.sourcetype, e.data.get("message"), e.data["log_id"]) for e in events] == [
        ("auth0_activity", "Signup", "000001"),
        ("auth0_activity", "Login", "000002"),
        ("auth0_activity", "Login", "000003"),
        ("auth0_activity", "Signup", "000004"),
        ("auth0_activity", "Signup", "000005"),
        ("auth0", None, "000006"),  # SPEC §4.1: every other log as Auth0 sent it
        ("auth0_activity", "Login", "000007"),
        ("auth0_activity", "Login", "000008"),
    ]
    assert events[6].data["loginsCount"] == 5 and events[6].data["tenant"] == "t.auth0.com"
    assert [e.time for e in events[4:6]] == ["1795168805.000", "1795168806.000"]
    # Only the logs that neither the page nor the state nor their own count decides read the flag.
    assert tenant.reads == [("auth0|flagged", "wasHere"), ("auth0|unflagged", "wasHere"), ("auth0|gone", "wasHere")]
    # The flag goes to every user new to the add-on, but one flagged already or gone.
    assert sorted(uid for uid, _, _ in tenant.writes) == ["auth0|counted", "auth0|new", "auth0|unflagged"]
    assert {flag for _, flag, _ in tenant.writes} == {"wasHere"}
    users = ["auth0|new", "auth0|flagged", "auth0|unflagged", "auth0|gone", "auth0|counted", "auth0|seen"]
    assert state.known_users(users + ["auth0|failed"]) == set(users)
    assert (stats.signups, stats.logins, stats.other_events, stats.events_written, stats.logs_read) == (3, 4, 1, 8, 8)
    assert stats.last_log_id == "000008" and stats.newest_log_date == "2026-11-20T10:00:08.000Z"
    assert state.checkpoint() == Checkpoint("000008", "2026-11-20T10:00:08.000Z")


def test_without_collect_all_other_logs_are_read_but_not_written(state):
    page = [
        {"log_id": "000001", "date": "2026-11-20T10:00:01.000Z", "type": "f", "user_id": "auth0|failed"},
        login(2, "auth0|new", count=1),
    ]
    stats, out = run(state, Tenant([page]))
    assert [e.data["log_id"] for e in parse_stream(out)] == ["000002"]
    assert (stats.logs_read, stats.events_written, stats.other_events) == (2, 1, 0)
    assert state.checkpoint().log_id == "000002"


def test_a_new_input_from_a_date_writes_no_log_dated_before_it_on_any_page(tmp_path):
    # Auth0 does not promise date order = log_id order: older dates turn up after the start.
    oldest = [login(7, "auth0|1", date="2026-11-21T10:00:00.000Z", count=1)]
    later = [
        login(8, "auth0|2", date="2026-11-21T07:59:59.999Z", count=1),
        {"log_id": "000009", "date": "2026-11-21T07:00:00.000Z", "type": "f", "user_id": "auth0|3"},
        login(10, "auth0|4", date="2026-11-21T08:00:00.000Z", count=1),
    ]
    with StateStore(str(tmp_path / "new.sqlite")) as fresh:
        stats, out = run(fresh, Tenant([later], oldest=oldest), start_from="2026-11-21T09:00:00+01:00", collect="all")
        assert fresh.checkpoint().log_id == "000010"
        # And on the runs after: the start is kept in the state.
        again = [
            login(11, "auth0|5", date="2026-11-21T07:00:00.000Z"),
            login(12, "auth0|6", date="2026-11-22T10:00:00.000Z", count=1),
        ]
        _, out_again = run(fresh, Tenant([again]), start_from="2026-11-21T09:00:00+01:00", collect="all")
    assert [e.data["log_id"] for e in parse_stream(out_again)] == ["000012"]
    assert [e.data["log_id"] for e in parse_stream(out)] == ["000007", "000010"]
    assert (stats.logs_read, stats.events_written, stats.signups) == (4, 2, 2)


def test_other_logs_are_counted_over_every_page(state):
    def failed(n):
        return {"log_id": f"{n:06d}", "date": "2026-11-20T10:00:00.000Z", "type": "f", "user_id": "auth0|x"}

    pages = [[failed(i) for i in range(1, 101)], [failed(101), login(102, "auth0|y", count=3)]]
    stats, out = run(state, Tenant(pages), collect="all")
    assert (stats.other_events, stats.logins, stats.events_written) == (101, 1, 102)


def test_a_user_the_add_on_knows_from_an_earlier_page_and_one_from_an_earlier_run_are_both_logins(state):
    state.commit_page(None, ["auth0|earlier_run"], [])
    pages = [full_page(1, count=1), [login(101, "auth0|1"), login(102, "auth0|earlier_run")]]
    tenant = FlagReadingTenant(pages)
    stats, out = run(state, tenant)
    assert [e.data["message"] for e in parse_stream(out)[100:]] == ["Login", "Login"]
    assert tenant.reads == []  # neither needed its flag read


def test_an_input_with_a_checkpoint_but_no_start_date_goes_on_from_its_checkpoint_not_the_newest_log(state):
    """An input whose state predates the recorded start (or was imported)
    has a checkpoint and no start date: that is not a lost state."""
    tenant = Tenant([[login(1, "auth0|1", count=1)]], newest=login(9000, "auth0|9"))
    with logged() as records:
        stats, _ = run(state, tenant, collector_options={"ran_before": True})
    assert stats.logs_read == 1 and state.checkpoint().log_id == "000001"
    assert not [line for line in messages(records) if "run before" in line]


def test_a_new_input_from_the_oldest_log_that_found_none_is_not_taken_for_a_lost_state_next_run(tmp_path):
    with StateStore(str(tmp_path / "new.sqlite")) as fresh:
        stats, _ = run(fresh, Tenant())
        assert stats.caught_up and fresh.start_date() == "oldest" and fresh.checkpoint() is None
        later = Tenant(oldest=[login(7, "auth0|1", count=1)], newest=login(9000, "auth0|9"))
        with logged() as records:
            stats, events = run(fresh, later, collector_options={"ran_before": True})
        assert stats.logs_read == 1 and fresh.checkpoint().log_id == "000007"
        assert [e.data["message"] for e in parse_stream(events)] == ["Signup"]
    assert not [line for line in messages(records) if "run before" in line]


def test_a_new_input_from_now_asks_for_the_logs_since_its_first_run_and_records_that_moment(tmp_path):
    class Since(Tenant):
        def oldest_logs(self, since=None):
            self.since = since
            return super().oldest_logs(since)

    tenant = Since()
    before = datetime.now(timezone.utc)
    with StateStore(str(tmp_path / "new.sqlite")) as fresh:
        run(fresh, tenant, start_from="now")
        recorded = fresh.start_date()
    after = datetime.now(timezone.utc)
    assert tenant.since == recorded
    moment = datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after
