"""SPEC §7 faults, end to end: nothing lost, nothing skipped, every failure said."""

import os
import signal
import subprocess
import time

import pytest

from tests.addon import ADDON_PYTHON, SCRIPT, parse_stream
from tests.fakes.seed import LOGS_ONLY_CLIENT_ID, LOGS_ONLY_CLIENT_SECRET, generate_activity
from tests.fakes.tenant import iso_ms

ACTIVITY = ("s", "ss")


def activity_ids(tenant):
    return [log["log_id"] for log in tenant.logs if log.get("type") in ACTIVITY]


def add_login(tenant, user="auth0|late", date=None, count=3):
    log = {
        "type": "s",
        "user_id": user,
        "user_name": user,
        "details": {"prompts": [{"name": "login", "stats": {"loginsCount": count}}]},
    }
    if date:
        log["date"] = date
    return tenant.add_log(log)


@pytest.mark.both_stores
def test_checkpoint_out_of_retention_restarts_from_oldest_with_a_warning(bed):
    # update_metadata=false: flag writes would add `sapi` logs dated now.
    first = bed.run(update_metadata="false")
    assert first.returncode == 0
    checkpoint = first.summary()["last_log_id"]
    checkpoint_date = bed.tenant.log(checkpoint)["date"]
    now = time.time()
    lost = [add_login(bed.tenant, f"auth0|lost{i}", iso_ms(now + 1 + i)) for i in range(2)]
    kept = [add_login(bed.tenant, f"auth0|kept{i}", iso_ms(now + 60 + i)) for i in range(3)]
    bed.tenant.purge_before(iso_ms(now + 30))  # the checkpoint's log and `lost` are gone
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert second.log_ids == kept
    assert not set(lost) & set(second.log_ids)
    warning = [line for line in second.stderr.splitlines() if "fallen out of Auth0's log retention" in line]
    assert len(warning) == 1 and warning[0].startswith("WARN ")
    # It names the checkpoint and its date, the window lost, and where it goes on.
    assert f"checkpoint log_id {checkpoint} ({checkpoint_date})" in warning[0]
    assert f"logs from {checkpoint_date} to {bed.tenant.log(kept[0])['date']} are lost" in warning[0]
    assert warning[0].endswith(f"restarting from the oldest retained log {kept[0]}")
    assert bed.run().events == []  # and it carries on from there


@pytest.mark.both_stores
def test_a_400_that_is_not_retention_stops_the_run_and_keeps_the_checkpoint(bed):
    first = bed.run()
    new = add_login(bed.tenant)
    bed.tenant.fail_next("logs", 400, body={"statusCode": 400, "error": "Bad Request", "message": "odd"})
    second = bed.run()
    assert second.returncode != 0
    assert second.events == []
    assert second.summary()["status"] == "error"
    assert "still within the tenant's retention" in second.stderr
    assert first.summary()["last_log_id"] in second.stderr  # names where it stopped
    third = bed.run()
    assert third.log_ids == [new]


def test_a_user_read_answered_with_no_user_stops_the_run_before_its_page_is_written(bed):
    first = bed.run()
    bed.tenant.add_user("auth0|late", app_metadata={"signedUp": True})
    # No loginsCount in the log: the flag decides between Signup and Login.
    new = bed.tenant.add_log({"type": "s", "user_id": "auth0|late", "user_name": "late"})
    bed.tenant.fail_next("users_read", 200, body="<html><body>Service temporarily unavailable</body></html>")
    second = bed.run()
    assert second.returncode != 0
    assert second.events == []  # not a Signup for a flagged user
    assert "the read of user auth0|late with text that is not JSON, not a user" in second.stderr
    assert first.summary()["last_log_id"] in second.stderr
    third = bed.run()
    assert third.log_ids == [new]
    assert third.events[0].data["message"] == "Login"


@pytest.mark.slow  # waits out back-off or a rate limit's reset
@pytest.mark.both_stores
def test_429_waits_for_the_reset_then_goes_on(bed):
    bed.tenant.fail_next("logs", 429, headers={"Retry-After": "1"})
    result = bed.run()
    assert result.returncode == 0, result.stderr
    assert result.log_ids == activity_ids(bed.tenant)
    assert result.summary()["rate_limited"] == "1"
    assert "rate limit (429)" in result.stderr


@pytest.mark.both_stores
def test_429_longer_than_a_run_waits_ends_the_run_cleanly(bed):
    bed.tenant.fail_next("logs", 429, headers={"Retry-After": "3600"})
    result = bed.run()
    assert result.events == []
    summary = result.summary()
    assert summary["status"] == "incomplete"
    assert result.returncode == 0  # not a failure: it continues next interval
    again = bed.run()
    assert again.log_ids == activity_ids(bed.tenant)


@pytest.mark.slow  # waits out back-off or a rate limit's reset
@pytest.mark.both_stores
def test_pacing_on_rate_limit_headers_avoids_429s(empty_bed):
    tenant = empty_bed.tenant
    generate_activity(tenant, 450, users=40)
    tenant.set_rate_limit("logs", limit=2, per_seconds=1.0)
    result = empty_bed.run()
    assert result.returncode == 0, result.stderr
    assert result.log_ids == activity_ids(tenant)
    assert tenant.calls[("GET", "logs")] >= 5
    assert tenant.throttled == 0  # it waited for the reset instead of hammering


@pytest.mark.slow  # waits out back-off or a rate limit's reset
@pytest.mark.both_stores
def test_5xx_and_dropped_connections_are_retried(bed):
    bed.tenant.fail_next("logs", 503, times=2)
    bed.tenant.fail_next("token", None)  # connection closed without an answer
    result = bed.run()
    assert result.returncode == 0, result.stderr
    assert result.log_ids == activity_ids(bed.tenant)
    assert "503" in result.stderr


@pytest.mark.slow  # waits out 15 s of retry back-off (1+2+4+8 s)
@pytest.mark.both_stores
def test_persistent_outage_fails_loudly_without_moving_the_checkpoint(bed):
    bed.tenant.fail_next("logs", 502, times=5)
    result = bed.run()
    assert result.returncode != 0
    assert result.events == []
    assert result.summary()["status"] == "error"
    assert "gave up after 4 retries" in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("ERROR ")]
    assert bed.run().log_ids == activity_ids(bed.tenant)


@pytest.mark.both_stores
def test_401_mid_run_gets_one_fresh_token(bed):
    bed.run()
    new = add_login(bed.tenant)
    bed.tenant.revoke_tokens()
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert second.log_ids == [new]
    assert bed.tenant.tokens_issued == 2


@pytest.mark.both_stores
def test_401_twice_stops_the_run(bed):
    bed.tenant.fail_next("logs", 401, times=2)
    result = bed.run()
    assert result.returncode != 0
    assert result.events == []
    assert "refused a fresh access token" in result.stderr
    assert bed.tenant.tokens_issued == 2


@pytest.mark.slow  # waits out 15 s of retry back-off (1+2+4+8 s)
@pytest.mark.both_stores
def test_flag_writes_that_fail_are_kept_and_retried_later(bed):
    bed.tenant.fail_next("users_write", 503, times=5)
    first = bed.run()
    assert first.returncode == 0, first.stderr
    assert first.log_ids == activity_ids(bed.tenant)  # events never wait for flags
    pending = int(first.summary()["flag_writes_pending"])
    assert pending > 0
    assert "flag writes paused" in first.stderr
    second = bed.run()
    assert second.events == []
    assert second.summary()["flag_writes_pending"] == "0"
    assert int(second.summary()["flag_writes_done"]) == pending - int(second.summary()["flag_writes_skipped"])
    for user_id, metadata in bed.seed.app_metadata_after.items():
        assert bed.tenant.user(user_id).get("app_metadata") == metadata, user_id


@pytest.mark.both_stores
def test_connections_are_pooled(empty_bed):
    tenant = empty_bed.tenant
    generate_activity(tenant, 600, users=300)
    result = empty_bed.run()
    assert result.returncode == 0, result.stderr
    calls = sum(tenant.calls.values())
    assert calls > 20
    assert tenant.connections <= 2, (tenant.connections, calls)


@pytest.mark.subprocess  # killed mid-run
@pytest.mark.both_stores
def test_a_crash_mid_run_loses_nothing_and_replays_at_most_one_page(empty_bed):
    bed = empty_bed
    tenant = bed.tenant
    generate_activity(tenant, 500, users=60)
    expected = activity_ids(tenant)
    tenant.set_rate_limit("logs", limit=1, per_seconds=1.0)  # one page a second: time to kill it
    bed.configure("prod")
    document = bed.input_document("prod")
    process = subprocess.Popen(
        [ADDON_PYTHON, SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bed.env
    )
    process.stdin.write(document.encode())
    process.stdin.close()
    received = b""
    deadline = time.time() + 60
    while received.count(b"</event>") < 150 and time.time() < deadline:
        received += os.read(process.stdout.fileno(), 65536)
    process.send_signal(signal.SIGKILL)
    process.wait()
    received += process.stdout.read()
    process.stdout.close()
    process.stderr.close()
    # What splunkd got before the kill: whole events only.
    cut = received.rfind(b"</event>") + len(b"</event>")
    before = [e.data["log_id"] for e in parse_stream(received[:cut].decode() + "</stream>")]
    assert 150 <= len(before) < len(expected)

    tenant.set_rate_limit("logs", None)
    after = bed.run()
    assert after.returncode == 0, after.stderr
    union = set(before) | set(after.log_ids)
    assert union == set(expected)  # nothing lost
    replayed = set(before) & set(after.log_ids)
    assert len(replayed) <= 100  # at most the page in flight
    assert after.log_ids == expected[len(expected) - len(after.log_ids) :]  # a suffix, in order


@pytest.mark.slow  # waits out back-off or a rate limit's reset
@pytest.mark.both_stores
def test_rate_limited_flag_writes_wait_until_the_logs_are_read(empty_bed):
    tenant = empty_bed.tenant
    generate_activity(tenant, 450, users=60)
    tenant.set_rate_limit("users_write", limit=5, per_seconds=1.0)
    result = empty_bed.run()
    assert result.returncode == 0, result.stderr
    assert result.log_ids == activity_ids(tenant)
    assert result.summary()["flag_writes_pending"] == "0"  # the last drain may wait: it did
    assert tenant.throttled == 0  # an empty bucket deferred the writes instead of earning 429s
    order = [(method, path.split("?")[0]) for method, path, _ in tenant.requests]
    last_page = max(i for i, (method, path) in enumerate(order) if path.endswith("/api/v2/logs"))
    patches_after = sum(1 for method, _ in order[last_page:] if method == "PATCH")
    assert patches_after > 5  # deferred past the last page, not written page by page at the limit's pace


@pytest.mark.subprocess  # a fresh interpreter without sqlite3
def test_a_python_without_sqlite3_says_so_in_one_line(bed, tmp_path):
    # Shadow the stdlib module the way a Python built without it behaves.
    shadow = tmp_path / "no-sqlite"
    (shadow / "sqlite3").mkdir(parents=True)
    (shadow / "sqlite3" / "__init__.py").write_text("raise ImportError('No module named _sqlite3')\n")
    bed.env = dict(bed.env, PYTHONPATH=str(shadow))
    result = bed.run()
    assert result.returncode != 0
    assert result.events == []
    errors = [line for line in result.stderr.splitlines() if "sqlite3" in line]
    assert len(errors) == 1 and errors[0].startswith("ERROR ")
    assert "splunk cmd python3" in errors[0]  # and how to check
    assert result.summary()["status"] == "error"


@pytest.mark.both_stores
def test_missing_update_scope_keeps_flags_pending_and_events_flowing(bed):
    bed.tenant.add_client(
        "reader-client", "reader-secret-0123456789", scopes=["read:logs", "read:logs_users", "read:users"]
    )
    result = bed.run(client_id="reader-client", client_secret="reader-secret-0123456789")
    assert result.returncode == 0, result.stderr
    assert result.log_ids == activity_ids(bed.tenant)
    assert int(result.summary()["flag_writes_pending"]) > 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR ")]
    assert any("lacks the update:users_app_metadata scope" in line for line in errors)
    assert bed.tenant.calls[("PATCH", "users_write")] == 1  # paused after the first refusal, not once per user


@pytest.mark.both_stores
def test_missing_read_users_scope_stops_before_the_page_it_cannot_classify(bed):
    result = bed.run(client_id=LOGS_ONLY_CLIENT_ID, client_secret=LOGS_ONLY_CLIENT_SECRET)
    assert result.returncode != 0
    assert result.events == []  # a page is written whole or not at all
    assert "lacks the read:users scope" in result.stderr
    assert result.summary()["status"] == "error"
