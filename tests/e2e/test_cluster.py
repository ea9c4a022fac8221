"""SPEC §7 on a search head cluster: the state in the KV store, one collector
per input (a lease), nothing lost or re-sent when the input moves, and a
lost state never silently re-read. Several search heads are several
SPLUNK_HOMEs and checkpoint dirs (Bed.member) against one fake splunkd."""

from __future__ import annotations

import collections
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.addon import ADDON_PYTHON, SCRIPT, Result, input_xml, parse_stream
from tests.fakes.seed import generate_activity

ACTIVITY = ("s", "ss")
STATE, USERS, FLAGS, LEASES = "ta_auth0_state", "ta_auth0_users", "ta_auth0_flags", "ta_auth0_leases"


def activity_ids(tenant):
    return [log["log_id"] for log in tenant.logs if log.get("type") in ACTIVITY]


def start(bed, name="prod") -> subprocess.Popen:
    """The script started as splunkd starts it on this search head."""
    document = input_xml(
        f"auth0_activity://{name}",
        bed.splunkd.input_params(name),
        bed.checkpoint_dir,
        bed.splunkd.server_uri,
        bed.splunkd.session_key,
        bed.server_host,
    )
    process = subprocess.Popen(
        [ADDON_PYTHON, SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bed.env
    )
    process.stdin.write(document.encode())
    process.stdin.close()
    process.stdin = None  # all it gets; communicate() must not touch it again
    return process


def finish(process, timeout=120) -> Result:
    out, err = process.communicate(timeout=timeout)
    stdout = out.decode()
    return Result(process.returncode, stdout, err.decode("utf-8", "replace"), parse_stream(stdout))


def kill_after_events(process, count, timeout=60):
    """SIGKILL once `count` events reached splunkd; the whole events it got."""
    received = b""
    deadline = time.time() + timeout
    while received.count(b"</event>") < count and time.time() < deadline:
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        received += chunk
    process.send_signal(signal.SIGKILL)
    process.wait()
    received += process.stdout.read()
    process.stdout.close()
    process.stderr.close()
    return whole_events(received)


def whole_events(received: bytes):
    cut = received.rfind(b"</event>") + len(b"</event>")
    return parse_stream(received[:cut].decode() + "</stream>") if cut > len(b"</event>") - 1 else []


def expire_leases(splunkd):
    """What 15 minutes after a crash looks like, without waiting for them."""
    for doc in splunkd.kv_documents(LEASES):
        splunkd.kv_put(LEASES, dict(doc, expires_at=0))


def assert_delivered_once(tenant, runs):
    """Every activity log delivered, each log_id's verdict the same every time
    it was sent, replay within one page, and one Signup per user at most."""
    expected = activity_ids(tenant)
    sent = [e for run in runs for e in run]
    ids = [e.data["log_id"] for e in sent]
    assert set(ids) == set(expected)  # nothing lost
    assert len(ids) - len(set(ids)) <= 100  # at most one page replayed
    verdicts = collections.defaultdict(set)
    for event in sent:
        verdicts[event.data["log_id"]].add(event.data["message"])
    assert all(len(v) == 1 for v in verdicts.values())  # a replayed page classifies as the first time
    signups = collections.Counter(
        e.data["userId"] for lid, e in {e.data["log_id"]: e for e in sent}.items() if e.data["message"] == "Signup"
    )
    assert not signups or max(signups.values()) == 1


def assert_flags_set(tenant, runs):
    users = {e.data["userId"] for run in runs for e in run if e.data["userId"]}
    assert users
    for uid in users:
        user = tenant.user(uid)
        if user is not None:
            assert (user.get("app_metadata") or {}).get("signedUp") is True, uid


@pytest.fixture
def cluster(empty_bed):
    """An empty tenant and two search heads of a cluster, state_store = auto."""
    empty_bed.splunkd.server_roles = ["search_head", "shc_member", "kv_store"]
    return empty_bed, empty_bed.member("sh1"), empty_bed.member("sh2")


@pytest.mark.subprocess  # killed mid-backfill
def test_killed_on_one_member_it_goes_on_from_the_shared_state_on_another(cluster):
    bed, sh1, sh2 = cluster
    generate_activity(bed.tenant, 500, users=60)
    bed.tenant.set_rate_limit("logs", limit=1, per_seconds=1.0)  # a page a second: time to kill it
    bed.configure("prod")
    before = kill_after_events(start(sh1), 150)
    assert 150 <= len(before) < len(activity_ids(bed.tenant))
    expire_leases(bed.splunkd)  # sh1 is gone: its lease runs out

    bed.tenant.set_rate_limit("logs", None)
    after = sh2.run()
    assert after.returncode == 0, after.stderr
    assert after.log_ids == activity_ids(bed.tenant)[-len(after.log_ids) :]  # a suffix, in order
    assert_delivered_once(bed.tenant, [before, after.events])
    assert after.summary()["flag_writes_pending"] == "0"
    assert_flags_set(bed.tenant, [before, after.events])

    again = sh1.run()  # the first member comes back
    assert again.returncode == 0, again.stderr
    assert again.events == []  # (it reads only the `sapi` logs of the flag writes)


@pytest.mark.subprocess  # two processes at once
def test_started_on_two_members_at_once_one_collects_the_other_steps_aside(cluster):
    bed, sh1, sh2 = cluster
    first = sh1.run()  # the input ran once (nothing yet): it has state, its secret is masked
    assert first.returncode == 0, first.stderr
    generate_activity(bed.tenant, 400, users=50)
    bed.tenant.set_rate_limit("logs", limit=1, per_seconds=1.0)  # a run lasts seconds: the two overlap
    runs = [finish(p) for p in [start(sh1), start(sh2)]]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    collected = [r for r in runs if r.events]
    aside = [r for r in runs if not r.events]
    assert len(collected) == 1 and len(aside) == 1, [r.stderr for r in runs]
    lines = aside[0].stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("INFO ") and "steps aside" in lines[0], lines
    assert_delivered_once(bed.tenant, [collected[0].events])
    assert len(collected[0].log_ids) == len(set(collected[0].log_ids))  # every log written once


def test_auto_keeps_the_state_in_the_kv_store_on_a_cluster_member_and_locally_standalone(empty_bed):
    bed = empty_bed
    generate_activity(bed.tenant, 120, users=20)
    standalone = bed.run("standalone")
    assert standalone.returncode == 0, standalone.stderr
    assert bed.splunkd.kv_documents(STATE) == []
    assert local_checkpoint(bed, "standalone") == standalone.summary()["last_log_id"]

    for roles, instance_type in ((["search_head", "shc_member"], None), (["search_head"], "cloud")):
        bed.splunkd.server_roles, bed.splunkd.instance_type = roles, instance_type
        name = f"clustered-{instance_type or 'shc'}"
        result = bed.run(name)
        assert result.returncode == 0, result.stderr
        [state] = [d for d in bed.splunkd.kv_documents(STATE) if d["input"] == name]
        assert state["last_log_id"] == result.summary()["last_log_id"]
        assert result.log_ids == standalone.log_ids
        assert local_checkpoint(bed, name) is None  # the local file keeps the token only
        assert local_token_kept(bed, name)
    users = bed.splunkd.kv_documents(USERS)
    assert users and all(set(d) >= {"_key", "state", "user_id", "seq"} for d in users)
    kv_text = " ".join(str(d) for c in (STATE, USERS, FLAGS, LEASES) for d in bed.splunkd.kv_documents(c))
    tokens = bed.tenant.issued_token_values
    assert tokens and not any(token in kv_text for token in tokens)  # the token never goes to the KV store


@pytest.mark.parametrize("how", ["status", "503"])
def test_kv_store_not_ready_stops_the_run_with_a_clear_error_and_writes_nothing(bed, how):
    if how == "status":
        bed.splunkd.kvstore_status = "starting"  # server/info says so
    else:  # server/info still says ready, the data endpoints answer 503

        def start_failing(method, collection, tail):
            bed.splunkd.kvstore_status = "starting"

        bed.splunkd.kv_hook = start_failing  # after the lease is taken
    result = bed.run(state_store="kvstore")
    assert result.returncode != 0
    assert result.events == []
    assert result.summary()["status"] == "error"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR ")]
    assert any("KV store is not ready" in line and "never falls back to a local file" in line for line in errors)
    assert local_checkpoint(bed, "prod") is None  # no local state to fork from
    bed.splunkd.kv_hook = None
    bed.splunkd.kvstore_status = "ready"
    assert bed.run().log_ids == activity_ids(bed.tenant)  # and it goes on once the KV store is up


def test_a_kv_store_lost_mid_run_loses_nothing(empty_bed):
    bed = empty_bed
    generate_activity(bed.tenant, 350, users=40)
    writes = []

    def fail_after_the_second_page(method, collection, tail):
        writes.append(collection)
        if writes.count(STATE) == 3:  # the start date, then pages 1 and 2
            bed.splunkd.kvstore_status = "starting"

    bed.splunkd.kv_hook = fail_after_the_second_page
    first = bed.run(state_store="kvstore", update_metadata="false")
    assert first.returncode != 0 and first.summary()["status"] == "error"
    assert 0 < len(first.events) < len(activity_ids(bed.tenant))
    bed.splunkd.kv_hook = None
    bed.splunkd.kvstore_status = "ready"
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert first.log_ids + second.log_ids == activity_ids(bed.tenant)  # committed pages are not sent again


# The KV writes of a run: lease taken (1), older leases deleted (2), start date (3);
# then per page: lease renewed, users saved, flags saved, state written, done flags deleted.
@pytest.mark.subprocess  # killed between writes
@pytest.mark.parametrize("nth_write", [4, 5, 6, 10, 11, 12, 13])
def test_a_kill_between_the_kv_writes_of_a_page_leaves_the_state_before_or_after_it(empty_bed, nth_write):
    bed = empty_bed
    generate_activity(bed.tenant, 300, users=50)
    bed.configure("prod", state_store="kvstore")
    process = start(bed)
    seen = []

    def kill(method, collection, tail):
        seen.append((method, collection, tail))
        if len(seen) == nth_write:
            process.kill()  # right after the write landed, before the script hears back

    bed.splunkd.kv_hook = kill
    out, _ = process.communicate(timeout=120)
    bed.splunkd.kv_hook = None
    assert process.returncode == -signal.SIGKILL, seen
    before = whole_events(out)
    after = bed.run()  # the same member again: it takes over its own dead run's lease
    assert after.returncode == 0, after.stderr
    assert_delivered_once(bed.tenant, [before, after.events])
    assert after.summary()["flag_writes_pending"] == "0"
    assert_flags_set(bed.tenant, [before, after.events])
    [state] = bed.splunkd.kv_documents(STATE)
    assert state["last_log_id"] == after.summary()["last_log_id"]


@pytest.mark.both_stores
def test_a_state_wiped_after_a_run_resends_nothing_old_says_so_then_delivers_new_logs(bed, state_store):
    first = bed.run()
    assert first.returncode == 0, first.stderr
    wipe_state(bed, state_store)
    # A log that arrives while the state is gone: the add-on cannot tell it
    # from the old ones, so it is the window the ERROR names.
    in_window = bed.tenant.add_log({"type": "ss", "user_id": "auth0|in-the-window"})
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert second.events == []  # nothing old re-sent (and no second Signup for anyone)
    errors = [line for line in second.stderr.splitlines() if line.startswith("ERROR ") and "found no state" in line]
    assert len(errors) == 1
    assert "may be missing" in errors[0] and "start_from" in errors[0]
    # It names where it goes on: the newest log (a token log of this very run, if it asked for one).
    named = re.search(r"after the newest log, log_id (\d+) of (\S+)\. ", errors[0])
    newest_date = bed.tenant.log(named.group(1))["date"]
    assert named.group(1) >= in_window and named.group(2) == newest_date
    assert f"in Splunk up to {newest_date} may be missing" in errors[0]
    assert f"host={bed.tenant.domain} | stats max(_time)" in errors[0]
    assert errors[0].endswith(f"disabled once it reaches {newest_date}, fills the gap")
    assert second.summary()["last_log_id"] == named.group(1)
    assert second.summary()["status"] == "ok"

    template = next(e for e in first.events if e.data["message"] == "Signup" and bed.tenant.user(e.data["userId"]))
    returning = {"type": "s", "user_id": template.data["userId"], "user_name": "back", "details": {}}  # SSO: no count
    new = [bed.tenant.add_log(returning), bed.tenant.add_log({"type": "ss", "user_id": "auth0|brand-new"})]
    third = bed.run()
    assert third.returncode == 0, third.stderr
    assert third.log_ids == new  # new logs delivered from there on
    assert [e.data["message"] for e in third.events] == ["Login", "Signup"]  # the flag in Auth0 still knows the user
    assert "found no state" not in third.stderr


def test_switching_local_to_kvstore_carries_the_state_over_once(bed):
    first = bed.run(state_store="local")
    assert first.returncode == 0, first.stderr
    template = next(e for e in first.events if e.data["message"] == "Signup" and bed.tenant.user(e.data["userId"]))
    new = bed.tenant.add_log({"type": "s", "user_id": template.data["userId"], "details": {}})
    bed.tenant.reset_counters()
    switched = bed.run(state_store="kvstore")
    assert switched.returncode == 0, switched.stderr
    assert switched.log_ids == [new]
    assert switched.events[0].data["message"] == "Login"
    assert bed.tenant.calls[("GET", "users_read")] == 0  # known from the carried-over users
    assert bed.tenant.tokens_issued == 0  # the token stays in the local file
    assert sum("carried this input's local state over" in line for line in switched.stderr.splitlines()) == 1
    again = bed.run()
    assert again.events == [] and "carried" not in again.stderr
    back = bed.run(state_store="local")  # the local file is out of date now: never used again
    assert back.returncode != 0 and back.events == []
    assert "moved to the KV store" in back.stderr


def local_checkpoint(bed, name):
    for file in os.listdir(bed.checkpoint_dir):
        if file.startswith(f"ta_auth0-{name}-") and file.endswith(".sqlite"):
            with sqlite3.connect(os.path.join(bed.checkpoint_dir, file)) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'last_log_id'").fetchone()
            return row[0] if row else None
    return None


def local_token_kept(bed, name):
    for file in os.listdir(bed.checkpoint_dir):
        if file.startswith(f"ta_auth0-{name}-") and file.endswith(".sqlite"):
            with sqlite3.connect(os.path.join(bed.checkpoint_dir, file)) as db:
                return db.execute("SELECT value FROM meta WHERE key = 'token'").fetchone() is not None
    return False


@pytest.mark.both_stores
def test_a_state_lost_on_a_tenant_without_logs_says_so_and_delivers_every_log_that_comes(empty_bed, state_store):
    bed = empty_bed
    bed.tenant.log_token_exchanges = False  # a tenant with no log at all
    first = bed.run()
    assert first.returncode == 0 and first.events == [], first.stderr
    wipe_state(bed, state_store)
    second = bed.run()
    assert second.returncode == 0, second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 1 and "its state is gone, and the tenant has no log: starting afresh" in errors[0]
    new = [bed.tenant.add_log({"type": "ss", "user_id": f"auth0|new{i}", "user_name": f"new{i}"}) for i in range(3)]
    third = bed.run()
    assert third.returncode == 0, third.stderr
    assert third.log_ids == new
    assert "ERROR" not in third.stderr


def wipe_state(bed, state_store):
    """What a move to another search head without the KV store looks like."""
    if state_store == "kvstore":
        for name in (STATE, USERS, FLAGS, LEASES):
            bed.splunkd.kv_clear(name)
    else:
        for name in os.listdir(bed.checkpoint_dir):
            os.remove(os.path.join(bed.checkpoint_dir, name))
