"""Run mode in this process: splunkd's XML in, events out, the run's log lines.

modinput.run is driven as splunkd drives the script (the `<input>` document
on stdin, events on stdout, log lines on stderr) against the fake tenant and
the fake splunkd, with a tenant of a few logs so that a run takes
milliseconds. What is checked is what an admin sees: the run summary's
counts (derived by hand from the logs each test seeds, SPEC §5 and §7), the
level splunkd reads from each stderr line, the ERROR that names what went
wrong, the exit code, the credential store and the stanza."""

from __future__ import annotations

import io
import os
import time

import pytest

from ta_auth0 import modinput
from ta_auth0.kvstate import LEASES
from ta_auth0.state import state_id
from tests.addon import APP_DIR, COLLECTIONS_CONF, input_xml, parse_stream
from tests.fakes.proxy import FakeProxy
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, add_test_clients
from tests.fakes.splunkd import FakeSplunkd
from tests.fakes.tenant import FakeTenant, iso_ms

MASK = "********"
HOUR = 3600.0


class Run:
    """What one run left: exit code, events, stderr lines, ta_auth0.log lines."""

    def __init__(self, code: int, stdout: bytes, stderr: str, log_file: str) -> None:
        self.code = code
        self.stdout = stdout.decode("utf-8")
        self.events = parse_stream(self.stdout) if self.stdout.endswith("</stream>") or not self.stdout else None
        self.stderr = stderr
        self.lines = stderr.splitlines()
        self.file_lines = []
        if os.path.exists(log_file):
            with open(log_file, encoding="utf-8") as handle:
                self.file_lines = handle.read().splitlines()

    def summary_line(self) -> str:
        found = [line for line in self.lines if "run summary:" in line]
        assert len(found) == 1, self.stderr
        return found[0]

    def summary(self) -> dict:
        pairs = self.summary_line().split("run summary:", 1)[1].split()
        return dict(pair.split("=", 1) for pair in pairs)

    def level_of(self, text: str) -> str:
        """The level splunkd reads (the line's first word) of the line with this text."""
        found = [line for line in self.lines if text in line]
        assert len(found) == 1, (text, self.stderr)
        return found[0].split(" ", 1)[0]

    def errors(self) -> list:
        return [line for line in self.lines if line.startswith("ERROR ")]


class World:
    """A small fake tenant, a fake splunkd, and the environment of a run."""

    def __init__(self, tenant: FakeTenant, splunkd: FakeSplunkd, root: str) -> None:
        self.tenant = tenant
        self.splunkd = splunkd
        self.checkpoint_dir = os.path.join(root, "checkpoints")
        os.makedirs(self.checkpoint_dir)
        self.log_file = os.path.join(root, "splunk", "var", "log", "splunk", "ta_auth0.log")
        splunkd.load_collections_conf(COLLECTIONS_CONF)

    def params(self, **overrides) -> dict:
        params = {
            "domain": self.tenant.domain,
            "client_id": MAIN_CLIENT_ID,
            "client_secret": MAIN_CLIENT_SECRET,
            "interval": "300",
            "index": "auth0",
            "state_store": "local",
        }
        params.update(overrides)
        return {key: value for key, value in params.items() if value is not None}

    def configure(self, name: str = "prod", **overrides) -> None:
        self.splunkd.add_input(name, **self.params(**overrides))

    def document(self, name: str = "prod", **metadata) -> bytes:
        """The document splunkd sends for the stanza as it is now."""
        return input_xml(
            f"auth0_activity://{name}",
            self.splunkd.input_params(name),
            self.checkpoint_dir,
            metadata.get("server_uri", self.splunkd.server_uri),
            metadata.get("session_key", self.splunkd.session_key),
        ).encode("utf-8")

    def run(self, name: str = "prod", document: bytes = None, stdout=None) -> Run:
        stdout = stdout if stdout is not None else io.BytesIO()
        stderr = io.StringIO()
        code = modinput.run(io.BytesIO(document or self.document(name)), stdout, stderr)
        return Run(code, stdout.getvalue(), stderr.getvalue(), self.log_file)


class Bare:
    """The same runner for runs that never get to call anything: no servers."""

    def __init__(self, root: str) -> None:
        self.checkpoint_dir = root
        self.log_file = os.path.join(root, "splunk", "var", "log", "splunk", "ta_auth0.log")

    def run(self, params: dict = None, document: bytes = None) -> Run:
        if document is None:
            base = {"domain": "example.us.auth0.com", "client_id": MAIN_CLIENT_ID, "interval": "300"}
            base.update(params or {})
            params = {key: value for key, value in base.items() if value is not None}
            document = input_xml("auth0_activity://prod", params, self.checkpoint_dir).encode("utf-8")
        stdout, stderr = io.BytesIO(), io.StringIO()
        code = modinput.run(io.BytesIO(document), stdout, stderr)
        return Run(code, stdout.getvalue(), stderr.getvalue(), self.log_file)


@pytest.fixture
def environment(ca, tmp_path, monkeypatch):
    """What splunkd's environment gives a run (tests.addon.addon_env): the test CA, SPLUNK_HOME, no proxy."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca.ca_bundle_path)
    monkeypatch.setenv("SPLUNK_HOME", str(tmp_path / "splunk"))


@pytest.fixture
def bare(environment, tmp_path):
    return Bare(str(tmp_path))


@pytest.fixture
def world(environment, ca, tmp_path):
    with FakeTenant(ca=ca, log_token_exchanges=False) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
        add_test_clients(tenant)
        yield World(tenant, splunkd, str(tmp_path))


def app_version_in_app_conf() -> str:
    with open(os.path.join(APP_DIR, "default", "app.conf"), encoding="utf-8") as handle:
        return next(line.split("=", 1)[1].strip() for line in handle if line.startswith("version"))


def ago(seconds: float) -> str:
    return iso_ms(time.time() - seconds)


def seed_activity(tenant: FakeTenant, age: float = 2 * HOUR) -> list:
    """Six logs, the oldest `age` seconds ago, one minute apart; by SPEC §5 (a
    fresh input, update_metadata = true, metadata_flag = signedUp):

    1. f  a failed login         not an activity event (an event with collect = all)
    2. ss alice                  Signup; alice's flag written
    3. s  alice                  Login (known since log 2)
    4. s  bob, no login count    Login (his flag is already true: no write)
    5. ss carol, deleted since   Signup; her flag write is skipped (404)
    6. s  dave, loginsCount 7    Login (he existed before); his flag written

    Auth0 logs each flag write (sapi): they come after the logs that made
    them due, for the next run to read.
    """
    tenant.add_user("auth0|alice", email="alice@example.com")
    tenant.add_user("google-oauth2|bob", email="bob@example.com", app_metadata={"signedUp": True})
    tenant.add_user("auth0|dave", email="dave@example.com")
    logs = [
        {"type": "f", "user_id": "auth0|alice", "user_name": "alice@example.com", "description": "Wrong password"},
        {"type": "ss", "user_id": "auth0|alice", "user_name": "alice@example.com"},
        {"type": "s", "user_id": "auth0|alice", "user_name": "alice@example.com"},
        {"type": "s", "user_id": "google-oauth2|bob", "user_name": "bob@example.com"},
        {"type": "ss", "user_id": "auth0|carol", "user_name": "carol@example.com"},
        {
            "type": "s",
            "user_id": "auth0|dave",
            "user_name": "dave@example.com",
            "details": {"prompts": [{"name": "login", "stats": {"loginsCount": 7}}]},
        },
    ]
    ids = []
    for offset, log in enumerate(logs):
        log["date"] = ago(age - 60 * offset)
        ids.append(tenant.add_log(log))
    return ids


# -- the summary line --------------------------------------------------------


def test_the_summary_counts_what_the_run_did(world):
    ids = seed_activity(world.tenant)
    world.configure(collect="all")
    run = world.run()

    assert run.code == 0, run.stderr
    assert [event.data.get("log_id") for event in run.events] == ids
    assert {(event.index, event.source, event.host) for event in run.events} == {
        ("auth0", "auth0", world.tenant.domain)
    }
    summary = run.summary()
    assert summary == {
        "status": "ok",
        "logs_read": "6",
        "events_written": "6",  # five activity events and the failed login (collect = all)
        "signups": "2",
        "logins": "3",
        "other_events": "1",
        "flag_writes_done": "2",  # alice, dave
        "flag_writes_pending": "0",
        "flag_writes_skipped": "1",  # carol
        # the token, the oldest log, the logs after it, bob's flag, three flag writes
        "api_calls": "7",
        "rate_limited": "0",
        "tokens_requested": "1",
        "duration_s": summary["duration_s"],
        "last_log_id": ids[-1],
        "lag_s": summary["lag_s"],
        "caught_up": "true",
        "interval_s": "300",
    }
    assert sum(world.tenant.calls.values()) == 7  # as many as the tenant answered
    assert 0.0 <= float(summary["duration_s"]) < 30.0
    # The newest log read is dated 2 h - 5 min ago.
    assert abs(int(summary["lag_s"]) - (2 * HOUR - 300)) <= 5
    assert run.level_of("run summary:") == "INFO"
    assert not any("hours behind" in line for line in run.lines)  # caught up: no lag warning
    assert world.tenant.user("auth0|alice")["app_metadata"] == {"signedUp": True}
    # Auth0 logs each flag write (sapi) with the caller's User-Agent: the add-on and its version.
    agents = {log["user_agent"] for log in world.tenant.logs if log["type"] == "sapi"}
    assert agents == {f"TA-auth0/{app_version_in_app_conf()}"}
    # The same line in ta_auth0.log, with the level by name.
    assert [line for line in run.file_lines if "run summary:" in line][0].split(" ")[1] == "INFO"
    assert run.summary_line().split("run summary:")[1] in run.file_lines[-1]


def test_a_run_with_nothing_new_says_so_and_succeeds(world):
    world.configure()
    run = world.run()
    assert run.code == 0, run.stderr
    assert run.events == []
    summary = run.summary()
    assert summary["status"] == "ok"
    assert summary["logs_read"] == summary["events_written"] == "0"
    assert summary["last_log_id"] == "-"
    assert summary["lag_s"] == "-"  # no log read: no lag to tell
    assert summary["caught_up"] == "true"


@pytest.mark.parametrize(
    ("interval", "expected"),
    [("300", "300"), (" 60 ", "60"), ("*/5 * * * *", "-"), (None, "-")],
)
def test_the_summary_gives_the_interval_in_seconds_or_a_dash_for_a_cron_schedule(bare, interval, expected):
    run = bare.run({"interval": interval})  # no client_secret: misconfigured, nothing called
    assert run.summary()["interval_s"] == expected


# -- outcomes ----------------------------------------------------------------


def test_a_misconfigured_input_says_what_is_wrong_and_fails(world):
    world.configure(domain=None)
    run = world.run()
    assert run.code == 1
    assert run.events == []
    (error,) = run.errors()[:1]
    assert "input prod is misconfigured, nothing collected: " in error
    assert "domain" in error
    summary = run.summary()
    assert run.level_of("run summary:") == "ERROR"
    assert summary["status"] == "error"
    assert (summary["api_calls"], summary["rate_limited"], summary["tokens_requested"]) == ("0", "0", "0")
    assert summary["logs_read"] == "0" and summary["last_log_id"] == "-"
    assert world.tenant.calls == {}
    assert MAIN_CLIENT_SECRET not in run.stderr


def test_an_incomplete_run_warns_says_where_it_stopped_and_how_far_behind_it_is(world):
    ids = seed_activity(world.tenant, age=10 * 24 * HOUR)
    # The first page (the oldest log alone) goes; on the next, bob's flag read
    # is told to wait an hour, longer than a run waits.
    world.tenant.fail_next("users_read", 429, headers={"Retry-After": "3600"})
    world.configure()
    run = world.run()

    assert run.code == 0, run.stderr  # incomplete is not a failure: the next interval goes on
    summary = run.summary()
    assert summary["status"] == "incomplete"
    assert run.level_of("run summary:") == "WARN"
    assert summary["caught_up"] == "false"
    assert summary["last_log_id"] == ids[0]
    assert summary["logs_read"] == "1" and summary["events_written"] == "0"  # the failed login: no event
    assert (summary["rate_limited"], summary["flag_writes_pending"]) == ("1", "0")
    assert run.level_of("run stopped early at log_id") == "WARN"
    assert f"run stopped early at log_id {ids[0]}: Auth0 rate limit (429) on users_read" in run.stderr
    assert abs(int(summary["lag_s"]) - 10 * 24 * HOUR) <= 5
    # 240 hours behind, with more logs waiting: past LAG_WARNING_SECONDS (12 h).
    assert run.level_of("hours behind") == "WARN"
    assert "the input is 240.0 hours behind the tenant's newest logs" in run.stderr

    # The next run catches up: as far behind, but nothing waits any more.
    again = world.run()
    assert again.code == 0, again.stderr
    assert again.summary()["caught_up"] == "true"
    assert int(again.summary()["lag_s"]) > 12 * HOUR
    assert not any("hours behind" in line for line in again.lines)


def test_a_run_less_than_12_hours_behind_gives_no_lag_warning(world):
    seed_activity(world.tenant, age=11 * HOUR)
    world.tenant.fail_next("users_read", 429, headers={"Retry-After": "3600"})
    world.configure()
    run = world.run()
    assert run.summary()["status"] == "incomplete"
    assert abs(int(run.summary()["lag_s"]) - 11 * HOUR) <= 5
    assert not any("hours behind" in line for line in run.lines)


def test_flag_writes_that_fail_stay_pending_and_are_counted(world):
    seed_activity(world.tenant)
    world.tenant.fail_next("users_write", 400)  # the first write fails: the writes pause for this run
    world.configure()
    run = world.run()
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert summary["status"] == "ok" and len(run.events) == 5  # flags never hold back the events
    # alice, carol and dave are due a flag write; none went.
    assert (summary["flag_writes_done"], summary["flag_writes_pending"]) == ("0", "3")
    assert "signedUp" not in world.tenant.user("auth0|alice").get("app_metadata", {})
    assert "flag writes paused for this run, 3 kept for the next" in run.errors()[0]


def test_a_429_makes_the_run_incomplete_and_is_counted(world):
    world.configure()
    world.tenant.fail_next("logs", 429, headers={"Retry-After": "3600"})
    run = world.run()
    assert run.code == 0, run.stderr
    summary = run.summary()
    assert (summary["status"], summary["rate_limited"], summary["caught_up"]) == ("incomplete", "1", "false")
    assert summary["api_calls"] == "2"  # the token, the refused log read
    assert summary["tokens_requested"] == "1"
    assert "Auth0 rate limit (429) on logs" in run.stderr


def test_a_run_stopped_before_its_first_page_names_the_checkpoint_it_goes_on_from(world):
    ids = seed_activity(world.tenant)
    world.configure(update_metadata="false")
    assert world.run().code == 0
    world.tenant.fail_next("logs", 429, headers={"Retry-After": "3600"})
    run = world.run()
    assert run.summary()["status"] == "incomplete"
    assert f"run stopped early at log_id {ids[-1]}: Auth0 rate limit (429) on logs" in run.stderr


def test_a_failed_run_names_the_checkpoint_it_goes_on_from(world):
    ids = seed_activity(world.tenant)
    world.configure(update_metadata="false")
    assert world.run().code == 0
    world.tenant.fail_next("logs", 403, body={"statusCode": 403, "error": "Forbidden", "message": "Blocked"})
    run = world.run()
    assert run.code == 1
    assert run.level_of("run failed at log_id") == "ERROR"
    assert f"domain={world.tenant.domain} run failed at log_id {ids[-1]}: Auth0 answered 403" in run.stderr
    summary = run.summary()
    assert run.level_of("run summary:") == "ERROR"
    assert (summary["status"], summary["logs_read"], summary["last_log_id"]) == ("error", "0", "-")


def test_a_new_input_whose_credentials_auth0_rejects_fails_and_says_so(world):
    world.configure(client_secret="not-the-secret")
    run = world.run()
    assert run.code == 1
    error = run.errors()[0]
    assert "run failed at log_id -: " in error  # no checkpoint yet
    assert "not-the-secret" not in run.stderr
    assert run.summary()["status"] == "error" and run.summary()["tokens_requested"] == "1"


def test_the_log_level_setting_silences_the_lines_below_it_but_not_the_run_summary(world):
    world.configure(log_level="WARNING")
    run = world.run()
    assert run.code == 0
    # An ok run at WARNING: its INFO summary only (SPEC §7: one line every run;
    # the "Input stalled" alert counts the status=ok ones).
    [line] = run.lines
    assert line.startswith("INFO pid=") and f" input=prod domain={world.tenant.domain} run summary: status=ok " in line
    [written] = run.file_lines
    assert " INFO pid=" in written and written.endswith(line.split(" run summary: ", 1)[1])
    world.tenant.add_log({"type": "s", "user_id": "auth0|u1", "user_name": "u1"})
    world.configure(log_level="ERROR")
    again = world.run()
    assert again.code == 0 and len(again.events) == 1
    [line] = again.lines
    assert line.startswith("INFO pid=") and " run summary: status=ok logs_read=1 events_written=1 " in line


def test_every_line_names_the_input_and_the_domain(world):
    world.configure()
    run = world.run()
    assert run.lines and all(f" input=prod domain={world.tenant.domain} " in line for line in run.lines)
    assert run.file_lines and all(f" input=prod domain={world.tenant.domain} " in line for line in run.file_lines)


def test_a_secret_pasted_into_another_field_is_masked_in_the_error_that_repeats_it(bare):
    run = bare.run(
        {
            "client_secret": "pasted-Secret-123",
            "start_from": "pasted-Secret-123",
            "proxy_url": "http://user:proxy-Pass-456@127.0.0.1:3128",
            "metadata_flag": "proxy-Pass-456!",
        }
    )
    assert run.code == 1
    error = run.errors()[0]
    assert "start_from must be oldest, now or an ISO-8601 date/time" in error and "got '********'" in error
    assert "got '********!'" in error
    for text in (run.stderr, "\n".join(run.file_lines)):
        assert "pasted-Secret" not in text and "proxy-Pass" not in text


# -- secrets -----------------------------------------------------------------


def splunkd_calls(world, since: int = 0) -> list:
    return [(method, path.split("?")[0]) for method, path, _status in world.splunkd.requests[since:]]


def test_a_typed_secret_moves_to_the_credential_store_and_the_stanza_is_masked(world):
    world.configure()
    run = world.run()
    assert run.code == 0, run.stderr
    assert world.splunkd.passwords == {("TA-auth0", "prod"): MAIN_CLIENT_SECRET}
    assert world.splunkd.input_params("prod")["client_secret"] == MASK
    assert run.level_of("moved client_secret into Splunk's credential store") == "INFO"
    assert MAIN_CLIENT_SECRET not in run.stderr + "\n".join(run.file_lines)

    # The next run (masked, the token cached) never calls splunkd.
    seen = len(world.splunkd.requests)
    again = world.run()
    assert again.code == 0, again.stderr
    assert splunkd_calls(world, seen) == []
    assert again.summary()["tokens_requested"] == "0"
    assert not any("moved" in line for line in again.lines)

    # Once Auth0 refuses the cached token, the secret is read from the store.
    world.tenant.revoke_tokens()
    seen = len(world.splunkd.requests)
    third = world.run()
    assert third.code == 0, third.stderr
    assert ("GET", "/servicesNS/nobody/TA-auth0/storage/passwords/TA-auth0%3Aprod%3A") in splunkd_calls(world, seen)
    assert third.summary()["tokens_requested"] == "1"
    assert MAIN_CLIENT_SECRET not in third.stderr + "\n".join(third.file_lines)


def test_a_typed_secret_still_collects_while_the_store_is_down_and_says_so(world):
    seed_activity(world.tenant)
    world.configure(update_metadata="false")
    world.splunkd.fail_next(503)
    run = world.run()
    assert run.code == 0, run.stderr
    assert len(run.events) == 5
    assert run.summary()["status"] == "ok"
    (error,) = run.errors()
    assert "cannot write the credential store" in error
    assert "the secret stays in plain text in inputs.conf until this works" in error
    assert world.splunkd.input_params("prod")["client_secret"] == MAIN_CLIENT_SECRET
    assert not any("moved" in line for line in run.lines)


def test_a_masked_secret_the_store_cannot_give_fails_the_run_without_asking_auth0(world):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    world.configure(client_secret=MASK)
    world.splunkd.fail_next(503)
    run = world.run()
    assert run.code == 1
    assert f"domain={world.tenant.domain} input prod: cannot read the credential store: 503 " in run.errors()[0]
    assert run.summary()["status"] == "error"
    assert world.tenant.calls[("POST", "token")] == 0
    # With the store back, the same stanza collects.
    back = world.run()
    assert back.code == 0, back.stderr
    assert back.summary()["tokens_requested"] == "1"


def test_a_stanza_that_cannot_be_masked_keeps_collecting_and_says_so(world):
    world.splunkd.validator = lambda name, params: "validation is down"
    world.configure()
    run = world.run()
    assert run.code == 0, run.stderr
    assert run.summary()["status"] == "ok"
    assert world.splunkd.passwords == {("TA-auth0", "prod"): MAIN_CLIENT_SECRET}
    (error,) = run.errors()
    assert "cannot mask the secret in the input's settings: 400 Bad Request -- validation is down; " in error
    assert error.endswith("; the secret stays in plain text in inputs.conf until this works")
    assert not any("moved" in line for line in run.lines)


# -- the state store ---------------------------------------------------------


def test_a_kv_store_that_is_not_ready_fails_the_run_clearly(world):
    world.splunkd.kvstore_status = "starting"
    world.configure(state_store="kvstore")
    run = world.run()
    assert run.code == 1
    assert run.errors()[0].endswith(
        "the KV store is not ready (kvStoreStatus=starting): the run stops and writes nothing; it never "
        "falls back to a local file. It goes on next interval once the KV store is ready"
    )
    assert run.summary()["status"] == "error"


def test_a_member_that_finds_the_lease_held_steps_aside_with_one_info_line(world):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    world.configure(client_secret=MASK, state_store="kvstore")
    hold_lease_elsewhere(world)
    run = world.run()
    assert run.code == 0, run.stderr
    assert run.events == []
    (line,) = run.lines
    assert (
        line.startswith("INFO ")
        and f"domain={world.tenant.domain} search head sh-other holds this input's lease" in line
    )
    assert line.endswith("steps aside and writes nothing")
    assert world.tenant.calls == {}


# -- the event stream and several stanzas ------------------------------------


class _Gone(io.BytesIO):
    """stdout whose reader (splunkd) went away: every write fails."""

    def write(self, data):
        raise BrokenPipeError(32, "Broken pipe")


class _GoneAtTheEnd(io.BytesIO):
    """stdout whose reader went away after the events, before the stream's end."""

    def write(self, data):
        if bytes(data).startswith(b"</stream>"):
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(data)


def test_a_run_whose_events_splunkd_stopped_reading_fails_and_says_so(world):
    seed_activity(world.tenant)
    world.configure(update_metadata="false")
    run = world.run(stdout=_Gone())
    assert run.code == 1
    assert "splunkd stopped reading the event stream" in run.errors()[0]
    assert run.summary()["status"] == "error"


def test_a_stream_that_cannot_be_ended_fails_the_process(world):
    seed_activity(world.tenant)
    world.configure(update_metadata="false")
    run = world.run(stdout=_GoneAtTheEnd())
    assert run.code == 1
    assert run.stdout.count("<event ") == 5 and not run.stdout.endswith("</stream>")
    assert run.summary()["status"] == "ok"  # the events were delivered; only the end was not


def test_an_unreadable_input_definition_is_an_error_on_stderr(bare):
    run = bare.run(document=b"<input><configuration>")
    assert run.code == 1
    (line,) = run.lines
    assert line.startswith("ERROR cannot read the input definition splunkd sent on stdin: ")
    run = bare.run(document=b"<items/>")
    assert run.code == 1
    assert run.lines == ["ERROR cannot read the input definition splunkd sent on stdin: expected <input>, got <items>"]


def two_stanzas(world, second: dict) -> bytes:
    """One document with the stanzas prod and other, as splunkd may send."""
    first = world.document("prod").decode("utf-8")
    world.splunkd.add_input("other", **world.params(**second))
    other = world.document("other").decode("utf-8")
    stanza = other[other.index("<stanza") : other.index("</configuration>")]
    return first.replace("</configuration>", stanza + "</configuration>").encode("utf-8")


def test_every_stanza_runs_and_one_failure_fails_the_process(world):
    seed_activity(world.tenant)
    world.configure(update_metadata="false")
    run = world.run(document=two_stanzas(world, {"domain": None}))
    assert run.code == 1
    assert len(run.events) == 5 and {event.stanza for event in run.events} == {"auth0_activity://prod"}
    assert "input other is misconfigured" in run.errors()[0]
    statuses = [line.split("status=")[1].split()[0] for line in run.lines if "run summary:" in line]
    assert statuses == ["ok", "error"]


def test_a_process_whose_stanzas_all_succeed_exits_0(world):
    world.configure(update_metadata="false")
    run = world.run(document=two_stanzas(world, {"update_metadata": "false"}))
    assert run.code == 0, run.stderr
    statuses = [line.split("status=")[1].split()[0] for line in run.lines if "run summary:" in line]
    assert statuses == ["ok", "ok"]


class _BrokenWriterStream:
    """An event stream (our interface) whose writer fails in a way nothing expects."""

    def writer(self, stanza, source, host, index):
        raise RuntimeError("the event writer broke")


def test_an_unexpected_failure_is_logged_with_its_type_and_fails_the_run(world):
    world.configure(update_metadata="false")
    stderr = io.StringIO()
    params = dict(world.splunkd.input_params("prod"), __app="TA-auth0")
    metadata = {
        "server_uri": world.splunkd.server_uri,
        "session_key": world.splunkd.session_key,
        "checkpoint_dir": world.checkpoint_dir,
    }
    assert modinput.run_input("auth0_activity://prod", params, metadata, _BrokenWriterStream(), stderr) is False
    text = stderr.getvalue()
    first = text.splitlines()[0]
    assert first.startswith("ERROR ") and first.endswith(
        "run failed unexpectedly: RuntimeError: the event writer broke Traceback (most recent call last):"
        + first.split("Traceback (most recent call last):", 1)[1]
    )
    assert "status=error" in text


def hold_lease_elsewhere(world, name: str = "prod") -> None:
    """Another search head holds this input's lease in the KV store."""
    key = state_id(name, world.tenant.domain)
    lease = {"state": key, "generation": 1, "member": "sh-other", "expires_at": time.time() + 900, "released": False}
    world.splunkd.kv_put(LEASES, {"_key": f"{key}.000000000001", **lease})


def test_a_typed_proxy_password_moves_to_the_store_at_the_start_of_the_run(world):
    # A member that then steps aside (the lease is held elsewhere) has
    # already stored it; masking the stanza is left to a run that collects.
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    world.configure(client_secret=MASK, proxy_url="http://me:proxy-Pass-789@127.0.0.1:3128", state_store="kvstore")
    hold_lease_elsewhere(world)
    run = world.run()
    assert run.code == 0, run.stderr
    assert world.splunkd.passwords[("TA-auth0", "prod#proxy")] == "proxy-Pass-789"
    assert world.splunkd.input_params("prod")["proxy_url"] == "http://me:proxy-Pass-789@127.0.0.1:3128"
    assert "proxy-Pass-789" not in run.stderr
    assert world.tenant.calls == {}


def test_a_masked_proxy_password_missing_from_the_store_fails_the_run_and_says_what_to_do(world):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    world.configure(client_secret=MASK, proxy_url=f"http://me:{MASK}@127.0.0.1:3128")
    run = world.run()
    assert run.code == 1
    assert run.errors()[0].endswith(
        "input prod: the proxy password of input prod is masked but missing from Splunk's credential store: "
        "edit the input and type the proxy URL again"
    )
    assert run.summary()["status"] == "error"
    assert world.tenant.calls == {}


def test_a_typed_secret_with_a_masked_proxy_password_fails_while_the_store_is_down(world):
    # The typed secret alone could go on in plain text; the proxy's cannot be read.
    world.configure(proxy_url=f"http://me:{MASK}@127.0.0.1:3128")
    world.splunkd.fail_next(503)
    run = world.run()
    assert run.code == 1
    assert "input prod: cannot write the credential store: 503 " in run.errors()[0]
    assert not any("plain text" in line for line in run.lines)
    assert world.tenant.calls == {}


def test_a_masked_proxy_password_is_read_from_the_store_at_the_start_of_the_run(world):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    world.splunkd.add_password("proxy-Pass-789", "prod#proxy", "TA-auth0")
    world.configure(client_secret=MASK, proxy_url=f"http://me:{MASK}@127.0.0.1:3128", state_store="kvstore")
    hold_lease_elsewhere(world)
    run = world.run()
    assert run.code == 0, run.stderr
    assert run.lines[0].startswith("INFO ") and "holds this input's lease" in run.lines[0]
    assert ("GET", "/servicesNS/nobody/TA-auth0/storage/passwords/TA-auth0%3Aprod%23proxy%3A") in splunkd_calls(world)


def test_an_input_that_ran_before_and_lost_its_state_goes_on_after_the_newest_log(world):
    ids = seed_activity(world.tenant)
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    world.configure(client_secret=MASK)  # masked: it has run before, but no state is there
    run = world.run()
    assert run.code == 0, run.stderr
    assert run.events == []  # nothing re-sent
    assert "this input has run before but found no state" in run.errors()[0]
    assert run.summary()["last_log_id"] == ids[-1]


def test_collect_all_writes_each_other_log_as_auth0_sent_it(world):
    log_id = world.tenant.add_log({"type": "f", "date": ago(60)})
    date = world.tenant.log(log_id)["date"]
    text = '{"log_id": "' + log_id + '", "date": "' + date + '", "type": "f", "score": 1.50, "note": "caf\\u00e9"}'
    world.tenant.fail_next("logs", 200, body="[ " + text + " ]")  # Auth0's own spacing and number forms
    world.configure(collect="all", update_metadata="false")
    run = world.run()
    assert run.code == 0, run.stderr
    (event,) = run.events
    assert event.raw == '{"log_id":"' + log_id + '","data":' + text + "}"
    assert event.sourcetype == "auth0"


def test_splunkd_without_a_session_key_leaves_a_typed_secret_in_place_and_says_why(bare):
    document = input_xml(
        "auth0_activity://prod",
        {"domain": "example.us.auth0.com", "client_id": MAIN_CLIENT_ID, "client_secret": "typed-Secret-1"},
        bare.checkpoint_dir,
        session_key="",
    ).encode("utf-8")
    run = bare.run(document=document)
    assert run.code == 1
    store, state = run.errors()[:2]
    assert store.endswith(
        "splunkd did not pass server_uri and session_key: cannot reach the credential store; "
        "the secret stays in plain text in inputs.conf until this works"
    )
    assert "splunkd did not pass server_uri and session_key: cannot reach the KV store or server/info" in state


def test_switching_to_the_kv_store_carries_the_local_state_over_once(world):
    ids = seed_activity(world.tenant)
    world.configure(update_metadata="false")
    assert len(world.run().events) == 5
    world.configure(client_secret=MASK, update_metadata="false", state_store="kvstore")
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", "TA-auth0")
    run = world.run()
    assert run.code == 0, run.stderr
    assert run.events == []  # goes on from the same checkpoint: nothing re-sent
    assert run.level_of("carried this input's local state over to the KV store (once)") == "INFO"
    assert f"checkpoint log_id {ids[-1]}, 4 known users, 0 pending flag writes" in run.stderr


def test_a_run_goes_through_the_inputs_proxy_retries_a_5xx_and_moves_both_typed_secrets(world):
    seed_activity(world.tenant)
    with FakeProxy("me", "proxy-Pass-789") as proxy:
        world.configure(proxy_url=f"http://me:proxy-Pass-789@127.0.0.1:{proxy.port}")
        world.tenant.fail_next("logs", 503)  # retried after a second, within the run's time
        run = world.run()
        assert run.code == 0, run.stderr
        assert proxy.tunnels == [world.tenant.domain] and proxy.refused == 0
    assert run.summary()["status"] == "ok" and run.summary()["signups"] == "2"
    assert "Auth0 answered 503 on logs: retrying logs in 1.0s" in run.stderr
    assert run.level_of("moved client_secret, proxy_url into Splunk's credential store") == "INFO"
    assert world.splunkd.passwords[("TA-auth0", "prod#proxy")] == "proxy-Pass-789"
    assert world.splunkd.input_params("prod")["proxy_url"] == f"http://me:{MASK}@127.0.0.1:{proxy.port}"
    assert "proxy-Pass-789" not in run.stderr + "\n".join(run.file_lines)
