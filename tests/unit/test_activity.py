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


def test_every_event_key_comes_from_its_own_log_field():
    # A successful login as Auth0's log schema describes one, each field
    # with a value of its own, so a key read from the wrong field shows.
    entry = {
        "log_id": "90020261120101112345000000000000000000000000000000000001",
        "date": "2026-11-20T10:11:12.345Z",
        "type": "s",
        "description": "Successful login",
        "client_id": "AaBbCc123",
        "client_name": "Shop",
        "ip": "198.51.100.7",
        "user_agent": "Chrome 131.0.0 / Mac OS X 14.6.1",
        "hostname": "example.us.auth0.com",
        "user_id": "google-oauth2|1089",
        "user_name": "bo@example.com",
        "connection": "google-oauth2",
        "connection_id": "con_G00gle",
        "strategy": "google-oauth2",
        "strategy_type": "social",
        "details": {"prompts": [{"name": "login", "stats": {"loginsCount": 5}}]},
    }
    assert activity.event_data(entry, LOGIN, "example.us.auth0.com") == {
        "message": "Login",
        "application": "Shop",
        "clientIP": "198.51.100.7",
        "protocol": None,
        "userName": "bo@example.com",
        "userId": "google-oauth2|1089",
        "log_id": "90020261120101112345000000000000000000000000000000000001",
        "date": "2026-11-20T10:11:12.345Z",
        "type": "s",
        "description": "Successful login",
        "connection": "google-oauth2",
        "connection_id": "con_G00gle",
        "strategy": "google-oauth2",
        "strategy_type": "social",
        "client_id": "AaBbCc123",
        "user_agent": "Chrome 131.0.0 / Mac OS X 14.6.1",
        "hostname": "example.us.auth0.com",
        "loginsCount": 5,
        "tenant": "example.us.auth0.com",
    }


def test_a_count_the_collector_computed_is_the_one_used():
    # The collector reads a log's count once and passes it on: the functions
    # take it as given rather than reading the log again.
    bare = log("s")
    assert activity.event_data(bare, LOGIN, "t", count=7)["loginsCount"] == 7
    assert not activity.needs_flag(bare, known=False, count=7)
    assert activity.needs_flag(log("s", count=7), known=False, count=None)
    assert classify(bare, known=False, count=1) == SIGNUP


def test_ss_is_a_signup_whatever_else_is_known():
    assert classify(log("ss", count=5), known=True, flagged=True) == SIGNUP


def test_a_user_id_is_a_non_empty_string():
    assert activity.user_id({"user_id": "auth0|1"}) == "auth0|1"
    for odd in ("", 5, None, ["auth0|1"]):
        assert activity.user_id({"user_id": odd}) is None


def test_protocol_is_a_string_or_nothing():
    def signup(value):
        return {"type": "ss", "details": {"body": {"transaction": {"protocol": value}}}}

    assert activity.protocol(signup("samlp")) == "samlp"
    assert activity.protocol(signup(5)) is None
    assert activity.protocol({"details": {"body": "text"}}) is None


def test_logins_count_skips_prompts_that_are_not_objects_or_carry_no_count():
    details = {"stats": {"loginsCount": 3}, "prompts": ["login", {"name": "mfa"}, {"stats": {}}]}
    assert activity.logins_count({"details": details}) == 3


@pytest.mark.parametrize("value", ["2026-11-20T24:00:00.000Z", "2026-11-20T23:60:00.000Z", "2026-11-20T23:59:60.000Z"])
def test_event_time_refuses_a_clock_out_of_range(value):
    assert activity.event_time(value) is None


def test_is_before_compares_moments_not_texts():
    same_moment = ("2026-11-20T10:11:12+00:00", "2026-11-20T10:11:12.000Z")
    assert not activity.is_before(*same_moment)
    assert not activity.is_before(*reversed(same_moment))


def test_newest_date_of_nothing_readable_is_none():
    assert activity.newest_date([]) is None
    assert activity.newest_date([None, 5]) is None


def test_newest_date_of_auth0_dates_and_of_equal_moments():
    assert activity.newest_date(["2026-11-20T10:00:00.000Z", "2026-11-20T09:00:00.000Z"]) == "2026-11-20T10:00:00.000Z"
    # Of two texts for one moment, the first is kept.
    assert activity.newest_date(["2026-11-20T10:11:12Z", "2026-11-20T10:11:12.000+00:00"]) == "2026-11-20T10:11:12Z"


def test_parse_date_reads_z_and_z_and_a_date_without_offset_as_utc():
    utc = datetime(2026, 11, 20, 10, 11, 12, 345000, tzinfo=timezone.utc)
    assert activity.parse_date("2026-11-20T10:11:12.345Z") == utc
    assert activity.parse_date("2026-11-20T10:11:12.345z") == utc
    assert activity.parse_date("2026-11-20T10:11:12.345X") is None
    naive = activity.parse_date("2026-11-20T10:11:12.345")
    assert naive == utc and naive.tzinfo == timezone.utc


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-20T10:11:12.5+00:00", "2026-11-20T10:11:12.500000+00:00"),
        ("2026-11-20T10:11:12.1234567+00:00", "2026-11-20T10:11:12.123456+00:00"),
        ("2026-11-20T10:11:12+00:00", "2026-11-20T10:11:12+00:00"),
    ],
)
def test_fractions_are_made_six_digits_for_python_3_9(text, expected):
    # Python 3.9's fromisoformat reads 3 or 6 fractional digits only (3.11+
    # reads any): this is what makes other widths readable on Splunk 9.x.
    assert activity._three_decimals(text) == expected
