"""SPEC §5 (Signup or Login) and §4 (the event's keys) as pure functions."""

import json
from datetime import datetime, timezone

import pytest

from ta_auth0 import activity
from ta_auth0.activity import LOGIN, SIGNUP, classify


def log(type_="s", count=None, old_count=None, user="auth0|1", **extra):
    details = {}
    if count is not None:
        details["prompts"] = [{"name": "authenticate"}, {"name": "login", "stats": {"loginsCount": count}}]
    if old_count is not None:
        details["stats"] = {"loginsCount": old_count}
    entry = {"type": type_, "user_id": user, "details": details}
    entry.update(extra)
    return entry


class TestClassify:
    def test_ss_is_always_a_signup(self):
        assert classify(log("ss"), known=False) == SIGNUP
        assert classify(log("ss", count=1), known=False) == SIGNUP

    def test_known_user_logs_in(self):
        assert classify(log("s", count=1), known=True) == LOGIN
        assert classify(log("s"), known=True, flagged=None) == LOGIN

    def test_first_login_count_one_is_a_signup(self):
        assert classify(log("s", count=1), known=False) == SIGNUP

    def test_earlier_logins_make_a_login(self):
        assert classify(log("s", count=2), known=False) == LOGIN
        assert classify(log("s", count=57), known=False) == LOGIN

    def test_older_log_format_count(self):
        assert classify(log("s", old_count=1), known=False) == SIGNUP
        assert classify(log("s", old_count=9), known=False) == LOGIN

    @pytest.mark.parametrize("flag, expected", [(True, LOGIN), (None, SIGNUP), (False, SIGNUP), ("true", SIGNUP)])
    def test_without_count_the_flag_decides(self, flag, expected):
        assert classify(log("s"), known=False, flagged=flag) == expected

    def test_flag_is_ignored_when_a_count_exists(self):
        # The login count is Auth0's own record; the flag only breaks ties.
        assert classify(log("s", count=1), known=False, flagged=True) == SIGNUP


class TestNeedsFlag:
    def test_only_unknown_s_without_count(self):
        assert activity.needs_flag(log("s"), known=False)
        assert not activity.needs_flag(log("s"), known=True)
        assert not activity.needs_flag(log("s", count=3), known=False)
        assert not activity.needs_flag(log("ss"), known=False)

    def test_no_user_id_cannot_be_looked_up(self):
        assert not activity.needs_flag(log("s", user=None), known=False)
        assert classify(log("s", user=None), known=False) == SIGNUP


class TestLoginsCount:
    @pytest.mark.parametrize(
        "details, expected",
        [
            (None, None),
            ("text", None),
            ({}, None),
            ({"prompts": "x"}, None),
            ({"prompts": [{"stats": {"loginsCount": 0}}]}, None),
            ({"prompts": [{"stats": {"loginsCount": True}}]}, None),
            ({"prompts": [{"stats": {"loginsCount": "3"}}]}, None),
            ({"prompts": [{"stats": {"loginsCount": 3}}, {"stats": {"loginsCount": 4}}]}, 4),
            ({"stats": {"loginsCount": 2}}, 2),
        ],
    )
    def test_odd_shapes(self, details, expected):
        assert activity.logins_count({"type": "s", "details": details}) == expected


def test_only_s_and_ss_are_activity():
    assert activity.is_activity({"type": "s"})
    assert activity.is_activity({"type": "ss"})
    for other in ("f", "fp", "fu", "slo", "sapi", "seacft", "w", None, ""):
        assert not activity.is_activity({"type": other})


def test_event_keys_and_values():
    entry = {
        "log_id": "9" * 56,
        "date": "2026-11-20T10:11:12.345Z",
        "type": "ss",
        "client_name": "Shop",
        "ip": "203.0.113.9",
        "user_name": "ann@example.com",
        "user_id": "auth0|ann",
        "connection": "Username-Password-Authentication",
        "client_id": "abc",
        "user_agent": "Firefox",
        "details": {"body": {"transaction": {"protocol": "oidc-basic-profile"}}},
    }
    data = activity.event_data(entry, SIGNUP, "example.us.auth0.com")
    assert list(data) == list(activity.EVENT_KEYS)
    assert data["message"] == "Signup"
    assert data["application"] == "Shop"
    assert data["clientIP"] == "203.0.113.9"
    assert data["protocol"] == "oidc-basic-profile"
    assert data["userName"] == "ann@example.com"
    assert data["userId"] == "auth0|ann"
    assert data["tenant"] == "example.us.auth0.com"
    assert data["date"] == entry["date"]


def test_missing_fields_give_nulls_not_errors():
    data = activity.event_data({"type": "s"}, LOGIN, "t.auth0.com")
    assert data["application"] is None and data["clientIP"] is None and data["protocol"] is None
    assert data["userId"] is None and data["loginsCount"] is None


def test_log_time_keeps_milliseconds():
    assert activity.log_time({"date": "2026-11-20T10:11:12.345Z"}) == 1795169472.345
    assert activity.log_time({"date": "2026-11-20T10:11:12Z"}) == 1795169472.0
    assert activity.log_time({"date": "2026-11-20T10:11:12.3456789Z"}) == 1795169472.346
    assert activity.log_time({"date": "garbage"}) is None
    assert activity.log_time({}) is None


@pytest.mark.parametrize(
    "text",
    ["Zoë 名前 😀", "<script>&\"'</script>", "line\nbreak\ttab\x00nul\x1f", "lone \ud800 surrogate \uffff"],
)
def test_json_is_exact(text):
    # XML safety is the stream's (tests/unit/test_stream.py runs these texts through it).
    data = {"userName": text}
    assert json.loads(activity.to_json(data)) == data


def test_stream_json_splices_the_log_as_auth0_sent_it():
    raw = '{"date": "2026-11-20T10:11:12.345Z",  "type":"fp", "n": 1.50, "u": "\\u00e9"}'
    text = activity.stream_json("900123", raw)
    assert text == '{"log_id":"900123","data":' + raw + "}"
    assert json.loads(text) == {"log_id": "900123", "data": json.loads(raw)}
    assert json.loads(activity.stream_json(None, "{}")) == {"log_id": None, "data": {}}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-20T10:11:12.345Z", "1795169472.345"),
        ("1970-01-01T00:00:00.000Z", "0.000"),
        ("2026-11-20T10:11:12Z", "1795169472.000"),
        ("2026-11-20T11:11:12.345+01:00", "1795169472.345"),
        ("2026-02-30T10:11:12.345Z", None),
        ("2026-11-20T25:11:12.345Z", None),
        ("garbage", None),
        (None, None),
        (12, None),
    ],
)
def test_event_time(value, expected):
    assert activity.event_time(value) == expected


def test_event_time_agrees_with_log_time():
    for millis in range(0, 86_400_000 * 3, 7_654_321):
        date = datetime.fromtimestamp(1_790_000_000 + millis / 1000, timezone.utc)
        text = date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{date.microsecond // 1000:03d}Z"
        assert activity.event_time(text) == f"{activity.log_time({'date': text}):.3f}"


def test_is_before_and_newest_date():
    assert activity.is_before("2026-11-20T10:11:12.345Z", "2026-11-20T10:11:12.346Z")
    assert not activity.is_before("2026-11-20T10:11:12.346Z", "2026-11-20T10:11:12.346Z")
    assert activity.is_before("2026-11-20T11:11:12.345+02:00", "2026-11-20T10:11:12.346Z")
    assert not activity.is_before(None, "2026-11-20T10:11:12.346Z")  # odd dates are never dropped
    assert not activity.is_before("garbage", "2026-11-20T10:11:12.346Z")
    dates = ["2026-11-20T10:00:00.000Z", None, "2026-11-20T12:00:00.000Z", "x", "2026-11-20T11:00:00.000Z"]
    assert activity.newest_date(dates) == "2026-11-20T12:00:00.000Z"
    assert activity.newest_date(["x", None]) is None
