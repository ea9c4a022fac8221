"""Issue 2's promises, end to end: the real script, the local tenant, XML out."""

import collections
import json

import pytest

from ta_auth0.activity import EVENT_KEYS

ACTIVITY = ("s", "ss")


def test_first_run_writes_one_event_per_signup_or_login(bed):
    result = bed.run()
    assert result.returncode == 0, result.stderr

    expected_ids = [log["log_id"] for log in bed.tenant.logs if log.get("type") in ACTIVITY]
    assert len(expected_ids) >= 40
    assert result.log_ids == expected_ids  # exactly these, once each, in log order
    other_types = {log["type"] for log in bed.tenant.logs if log.get("type") not in ACTIVITY}
    assert {"f", "fp", "fu", "sapi"} <= other_types  # the seed has things that must not become events

    for event in result.events:
        assert event.source == "auth0"
        assert event.sourcetype == "auth0_activity"
        assert event.host == bed.tenant.domain
        assert event.index == "auth0"
        assert event.stanza == "auth0_activity://prod"
        assert list(event.data) == list(EVENT_KEYS)
        assert event.data["tenant"] == bed.tenant.domain


def test_event_fields_come_from_the_log(bed):
    logs = {log["log_id"]: log for log in bed.tenant.logs}
    for event in bed.run().events:
        log = logs[event.data["log_id"]]
        assert event.data["application"] == log.get("client_name")
        assert event.data["clientIP"] == log.get("ip")
        assert event.data["userName"] == log.get("user_name")
        assert event.data["userId"] == log.get("user_id")
        assert event.data["type"] == log["type"]
        assert event.data["date"] == log.get("date")
        assert event.data["connection"] == log.get("connection")
        assert event.data["client_id"] == log.get("client_id")
        assert event.data["user_agent"] == log.get("user_agent")
        # time = the log's date, milliseconds kept
        assert event.time == _epoch_ms(log["date"])


def test_protocol_recorded_for_signups(bed):
    events = bed.run().events
    protocols = {e.data["log_id"]: e.data["protocol"] for e in events}
    logs = {log["log_id"]: log for log in bed.tenant.logs}
    with_protocol = [
        lid
        for lid, log in logs.items()
        if log.get("type") == "ss" and ((log.get("details") or {}).get("body") or {}).get("transaction")
    ]
    assert with_protocol
    for lid in with_protocol:
        assert protocols[lid] == logs[lid]["details"]["body"]["transaction"]["protocol"]
    assert all(protocols[lid] is None for lid, log in logs.items() if log.get("type") == "s")


def test_text_is_written_exactly(bed):
    logs = {log["log_id"]: log for log in bed.tenant.logs}
    events = bed.run().events
    odd = [e for e in events if any(ch in (e.data["userName"] or "") for ch in '<&"ëÜ名\n😀')]
    assert len(odd) >= 2
    for event in odd:
        assert event.data["userName"] == logs[event.data["log_id"]]["user_name"]
        assert event.data["application"] == logs[event.data["log_id"]].get("client_name")


@pytest.mark.both_stores
def test_signup_or_login_as_spec_section_5(bed):
    result = bed.run()
    got = {e.data["log_id"]: e.data["message"] for e in result.events}
    assert got == dict(bed.seed.expected)
    summary = result.summary()
    assert int(summary["signups"]) == bed.seed.signups
    assert int(summary["logins"]) == bed.seed.logins


@pytest.mark.both_stores
def test_each_user_has_at_most_one_signup_across_runs(bed):
    first = bed.run()
    for ref in ("a-s1", "c-s1", "f-s1", "h-s1"):  # new activity for users seen before
        template = next(log for log in bed.tenant.logs if log["log_id"] == bed.seed.refs[ref])
        bed.tenant.add_log({k: v for k, v in template.items() if k not in ("log_id", "date")})
    second = bed.run()
    assert len(second.events) == 4
    assert {e.data["message"] for e in second.events} == {"Login"}
    signups = collections.Counter(
        e.data["userId"] for e in first.events + second.events if e.data["message"] == "Signup" and e.data["userId"]
    )
    assert signups and max(signups.values()) == 1


@pytest.mark.both_stores
def test_flags_set_and_other_metadata_kept(bed):
    before = {user["user_id"]: user for user in bed.tenant.users}
    events = bed.run().events
    with_events = {e.data["userId"] for e in events if e.data["userId"]}
    for user_id, user in before.items():
        after = bed.tenant.user(user_id)
        if user_id in with_events:
            expected = dict(user.get("app_metadata") or {}, signedUp=True)
            assert after.get("app_metadata") == expected, user_id
        else:
            assert after.get("app_metadata") == user.get("app_metadata"), user_id
    assert bed.seed.app_metadata_after  # the fixture's hand-written expectation agrees
    for user_id, metadata in bed.seed.app_metadata_after.items():
        assert bed.tenant.user(user_id).get("app_metadata") == metadata, user_id
    # Each PATCH sends the flag key only.
    assert bed.tenant.patches
    for _, body in bed.tenant.patches:
        assert body == {"app_metadata": {"signedUp": True}}


def test_custom_flag_name_and_read_only_mode(bed):
    bed.run(metadata_flag="seenBySplunk", update_metadata="false")
    assert bed.tenant.patches == []
    assert bed.tenant.calls[("PATCH", "users_write")] == 0


@pytest.mark.both_stores
def test_second_run_writes_nothing_new_then_only_new_logs(bed):
    first = bed.run()
    assert first.events
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert second.events == []
    assert second.summary()["events_written"] == "0"

    new_ids = [
        bed.tenant.add_log(
            {
                "type": "s",
                "user_id": "auth0|new-1",
                "user_name": "new@example.com",
                "client_name": "Shop",
                "details": {"prompts": [{"name": "login", "stats": {"loginsCount": 1}}]},
            }
        ),
        bed.tenant.add_log({"type": "f", "user_id": "auth0|new-1", "description": "Wrong password"}),
    ]
    third = bed.run()
    assert third.log_ids == new_ids[:1]
    assert third.events[0].data["message"] == "Signup"


@pytest.mark.both_stores
def test_three_runs_one_token_and_repeat_logins_cost_no_user_calls(bed):
    bed.run()
    assert bed.tenant.tokens_issued == 1
    bed.tenant.reset_counters()
    # Repeat logins of users the add-on already knows.
    for ref in ("a-s1", "c-s2", "e-s1", "f-s1", "h-s1"):
        template = next(log for log in bed.tenant.logs if log["log_id"] == bed.seed.refs[ref])
        bed.tenant.add_log({k: v for k, v in template.items() if k not in ("log_id", "date")})
    second = bed.run()
    third = bed.run()
    assert len(second.events) == 5 and third.events == []
    assert bed.tenant.tokens_issued == 0  # counted since reset_counters()
    assert bed.tenant.calls[("POST", "token")] == 0
    assert bed.tenant.calls[("GET", "users_read")] == 0
    assert bed.tenant.calls[("PATCH", "users_write")] == 0


@pytest.mark.both_stores
def test_new_user_costs_at_most_one_read_and_one_write(bed):
    bed.run()
    bed.tenant.reset_counters()
    bed.tenant.add_user("auth0|fresh", name="Fresh", app_metadata={"plan": "free"})
    bed.tenant.add_log({"type": "s", "user_id": "auth0|fresh", "details": {}})  # no login count: flag decides
    result = bed.run()
    assert [e.data["message"] for e in result.events] == ["Signup"]
    assert bed.tenant.calls[("GET", "users_read")] == 1
    assert bed.tenant.calls[("PATCH", "users_write")] == 1
    assert bed.tenant.user("auth0|fresh")["app_metadata"] == {"plan": "free", "signedUp": True}


@pytest.mark.both_stores
def test_start_from_now_skips_old_logs(bed):
    first = bed.run(start_from="now")
    assert first.events == []
    assert first.returncode == 0, first.stderr
    lid = bed.tenant.add_log({"type": "ss", "user_id": "auth0|later", "user_name": "later@example.com"})
    second = bed.run()
    assert second.log_ids == [lid]


def test_start_from_date_writes_only_logs_since(bed):
    logs = [log for log in bed.tenant.logs if log.get("type") in ACTIVITY]
    middle = sorted(log["date"] for log in logs)[len(logs) // 2]
    result = bed.run(start_from=middle)
    assert result.events
    assert all(e.data["date"] >= middle for e in result.events)
    assert sorted(result.log_ids) == sorted(log["log_id"] for log in logs if log["date"] >= middle)


def test_summary_line_counts(bed):
    result = bed.run()
    summary = result.summary()
    assert summary["status"] == "ok"
    assert int(summary["logs_read"]) == len(bed.tenant.logs) - _sapi_added(bed)
    assert int(summary["events_written"]) == len(result.events)
    deleted = [uid for uid, _ in bed.tenant.patches if bed.tenant.user(uid) is None]
    assert deleted  # the seed has users deleted since their logs: their PATCH 404s and is skipped
    assert int(summary["flag_writes_done"]) == len(bed.tenant.patches) - len(deleted)
    assert int(summary["flag_writes_skipped"]) == len(deleted)
    assert summary["flag_writes_pending"] == "0"
    assert summary["last_log_id"] == result.log_ids[-1] or summary["last_log_id"] > result.log_ids[-1]
    assert int(summary["api_calls"]) == sum(bed.tenant.calls.values())
    assert summary["caught_up"] == "true"
    with open(bed.log_file, encoding="utf-8") as handle:
        assert "run summary: status=ok" in handle.read()


def _sapi_added(bed):
    # Each flag write adds a `sapi` log to the tenant after the run read it.
    return sum(1 for log in bed.tenant.logs if log.get("type") == "sapi" and log.get("description") == "Update a user")


def _epoch_ms(date):
    from datetime import datetime

    moment = datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%fZ")
    from calendar import timegm

    return f"{timegm(moment.timetuple()) + moment.microsecond / 1e6:.3f}"


def test_events_are_valid_json_objects(bed):
    for event in bed.run().events:
        assert isinstance(json.loads(event.raw), dict)


@pytest.mark.both_stores
def test_a_deleted_user_gets_one_signup_across_pages_and_runs(bed):
    # A user deleted since, whose logins carry no count (SSO): the first is a
    # Signup (the flag cannot be read); every later one must be a Login.
    sso = {"type": "s", "user_id": "auth0|gone-for-good", "user_name": "gone", "details": {}}
    bed.tenant.add_log(dict(sso))
    first = bed.run()
    bed.tenant.add_log(dict(sso))
    second = bed.run()
    messages = [e.data["message"] for e in first.events + second.events if e.data["userId"] == "auth0|gone-for-good"]
    assert messages == ["Signup", "Login"]
    assert bed.tenant.calls[("GET", "users_read")] >= 1
