"""SPEC §4.1 (`collect = all`), end to end: every Auth0 log in Splunk exactly once."""

from __future__ import annotations

import http.client
import json
import ssl

from tests.addon import Result

ACTIVITY = ("s", "ss")

# Logs beyond the seed's types: a type no lookup knows, with keys Auth0 may
# add one day, and text that needs escaping.
EXTRA_LOGS = [
    {
        "type": "zz_not_yet_documented",
        "description": "A future event",
        "new_key": {"nested": [1, 2.5, None, True], "ünïcode": "名前 😀 <&>"},
        "ip": "198.51.100.7",
    },
    {"type": "limit_wc", "ip": "203.0.113.50", "description": "Blocked IP address <script>]]>", "details": {}},
    {"type": "pwd_leak", "user_name": "ann@example.com", "ip": "203.0.113.9", "description": "Breached password"},
]


def _all_logs_run(bed, **params) -> Result:
    for log in EXTRA_LOGS:
        bed.tenant.add_log(log)
    return bed.run(collect="all", update_metadata="false", **params)


def test_every_log_is_one_event_in_log_order(bed):
    result = _all_logs_run(bed)
    assert result.returncode == 0, result.stderr
    logs = bed.tenant.logs
    assert [e.data["log_id"] for e in result.events] == [log["log_id"] for log in logs]
    for event, log in zip(result.events, logs):
        assert event.source == "auth0" and event.host == bed.tenant.domain and event.index == "auth0"
        if log["type"] in ACTIVITY:
            assert event.sourcetype == "auth0_activity"  # s/ss stay what they were: one event each, never two
            assert event.data["message"] in ("Signup", "Login")
        else:
            assert event.sourcetype == "auth0"
            assert event.data == {"log_id": log["log_id"], "data": log}  # the log exactly, unknown keys kept
    summary = result.summary()
    assert int(summary["events_written"]) == len(logs)
    others = sum(1 for log in logs if log["type"] not in ACTIVITY)
    assert int(summary["other_events"]) == others
    assert int(summary["signups"]) + int(summary["logins"]) == len(logs) - others


def test_the_log_is_written_as_the_api_returned_it(bed):
    result = _all_logs_run(bed)
    token = bed.tenant.issue_token("test-client-id")
    context = ssl.create_default_context(cafile=bed.ca.ca_bundle_path)
    connection = http.client.HTTPSConnection("127.0.0.1", bed.tenant.port, context=context)
    try:
        for event in (e for e in result.events if e.sourcetype == "auth0"):
            connection.request(
                "GET", f"/api/v2/logs/{event.data['log_id']}", headers={"Authorization": f"Bearer {token}"}
            )
            served = connection.getresponse().read().decode("utf-8")
            # The event's text is `{"log_id":…,"data":` + the log's own JSON text + `}`.
            prefix = '{"log_id":' + json.dumps(event.data["log_id"]) + ',"data":'
            assert event.raw.startswith(prefix) and event.raw.endswith("}")
            assert event.raw[len(prefix) : -1] == served
    finally:
        connection.close()


def test_time_is_the_logs_date(bed):
    result = _all_logs_run(bed)
    for event in result.events:
        if event.sourcetype == "auth0":
            date = event.data["data"]["date"]
            assert event.time is not None and date.startswith("20")
            assert event.time.endswith(date[20:23])  # milliseconds kept


def test_collect_all_costs_no_extra_api_call(bed):
    bed.run("activity", collect="activity", update_metadata="false")
    activity_requests = [(method, path) for method, path, _ in bed.tenant.requests]
    bed.tenant.reset_counters()
    bed.run("everything", collect="all", update_metadata="false")
    all_requests = [(method, path) for method, path, _ in bed.tenant.requests]
    assert all_requests == activity_requests
    assert any("/api/v2/logs" in path for _, path in all_requests)


def test_collect_activity_writes_no_other_event(bed):
    for log in EXTRA_LOGS:
        bed.tenant.add_log(log)
    result = bed.run()
    assert result.events and {e.sourcetype for e in result.events} == {"auth0_activity"}
    assert result.summary()["other_events"] == "0"


def test_flags_and_signups_are_the_same_with_collect_all(bed):
    result = bed.run(collect="all")
    assert result.returncode == 0, result.stderr
    got = {e.data["log_id"]: e.data["message"] for e in result.events if e.sourcetype == "auth0_activity"}
    assert got == dict(bed.seed.expected)
    for user_id, metadata in bed.seed.app_metadata_after.items():
        assert bed.tenant.user(user_id).get("app_metadata") == metadata, user_id
    # The flag writes' own `sapi` logs come in on the next run, as events too.
    again = bed.run()
    sapi = [e for e in again.events if e.sourcetype == "auth0" and e.data["data"]["type"] == "sapi"]
    written = [uid for uid, _ in bed.tenant.patches if bed.tenant.user(uid) is not None]  # not the 404s
    assert written
    assert len(sapi) == len(written)


def test_the_apps_knowledge_reads_these_events_as_it_reads_auth0s_log_stream(bed):
    """The same log, from this input or from Auth0's log stream through HEC,
    gets the same fields, event types and tags (SPEC §8); only the tenant
    (dest, dvc, vendor_account) comes from `host` here, where the stream's HEC
    token owns `host`."""
    from tests.knowledge import Knowledge, stream_event
    from tests.spl import kv_json

    knowledge = Knowledge()
    result = _all_logs_run(bed)
    logs = {log["log_id"]: log for log in bed.tenant.logs}
    compared = 0
    for event in result.events:
        if event.sourcetype != "auth0":
            continue
        ours = kv_json(json.loads(event.raw), nulls="null")
        ours.update(
            source=event.source, sourcetype=event.sourcetype, host=event.host, index=event.index, _raw=event.raw
        )
        fields = knowledge.fields(ours)
        streamed = knowledge.fields(stream_event(logs[event.data["log_id"]]))
        for key in set(fields) | set(streamed):
            if key in ("dest", "dvc", "tenant", "vendor_account", "_meta", "host", "source", "index", "_raw"):
                continue
            assert fields.get(key) == streamed.get(key), (event.data["data"]["type"], key)
        assert fields["dest"] == bed.tenant.domain
        compared += 1
    assert compared >= 20
