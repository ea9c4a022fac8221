"""Which state store an input gets (`state_store = local | kvstore | auto`),
against the fake splunkd's server/info and KV store: the choice, the token
cache it opens, the carry-over from a local file, and what the errors say."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest

from ta_auth0.auth0_api import TOKEN_RENEW_MARGIN, MemoryTokenCache
from ta_auth0.config import parse_config
from ta_auth0.kvstate import LEASES, STATE, USERS, KVStoreError
from ta_auth0.state import CachedToken, Checkpoint, StateError, StateStore, state_path
from ta_auth0.stores import cached_token, keep_token, open_state
from tests.unit.logs import logged, messages

SESSION_KEY = "unit-stores-session-key"
DOMAIN = "example.us.auth0.com"
LOG = logging.getLogger("ta_auth0.test_stores")


@pytest.fixture
def splunkd(start_splunkd):
    return start_splunkd(SESSION_KEY)


def config(state_store: str, client_id: str = "cid"):
    params = {"domain": DOMAIN, "client_id": client_id, "client_secret": "s", "state_store": state_store}
    return parse_config("auth0_activity://prod", params)


def metadata(splunkd, checkpoint_dir, **overrides):
    meta = {
        "server_uri": splunkd.server_uri if splunkd is not None else None,
        "session_key": SESSION_KEY,
        "checkpoint_dir": str(checkpoint_dir),
        "server_host": "sh1",
    }
    meta.update(overrides)
    return meta


def info_requests(splunkd) -> int:
    return sum(1 for method, path, _ in splunkd.requests if path.split("?")[0].endswith("/server/info"))


def token(client_id="cid", expires_in=3600.0) -> CachedToken:
    return CachedToken("at-" + client_id, time.time() + expires_in, client_id, "read:logs")


# -- local -------------------------------------------------------------------------------


def test_local_uses_the_checkpoint_file_and_never_asks_splunkd(tmp_path):
    meta = {"checkpoint_dir": str(tmp_path)}  # no server_uri, no session key: none needed
    with open_state(config("local"), meta, LOG) as opened:
        assert opened.backend == "local" and opened.heartbeat is None
        opened.state.commit_page(Checkpoint("0007"), ["u1"], [])
        opened.token_cache.save_token(token())
    path = state_path(str(tmp_path), "prod", DOMAIN)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with StateStore(path) as local:
        assert local.checkpoint() == Checkpoint("0007")
        assert local.token().access_token == "at-cid"  # the token lives in the same file


def test_a_local_file_that_moved_to_the_kv_store_stops_a_local_run(tmp_path):
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        local.mark_migrated("2026-11-20T10:00:00Z")
    with pytest.raises(StateError) as caught:
        with open_state(config("local"), {"checkpoint_dir": str(tmp_path)}, LOG):
            pass
    assert "moved to the KV store on 2026-11-20T10:00:00Z" in str(caught.value)
    assert "set state_store = kvstore" in str(caught.value)


# -- auto ----------------------------------------------------------------------------------


def test_auto_on_a_standalone_splunkd_is_local_and_asks_server_info_once_per_splunkd(splunkd, tmp_path):
    meta = metadata(splunkd, tmp_path)
    with open_state(config("auto"), meta, LOG) as opened:
        assert opened.backend == "local"
        assert isinstance(opened.state, StateStore)
    assert info_requests(splunkd) == 1
    assert splunkd.kv_documents(LEASES) == []  # no lease, no KV store state
    with open_state(config("auto"), meta, LOG) as opened:  # the next run under the same splunkd
        assert opened.backend == "local"
    assert info_requests(splunkd) == 1 and len(splunkd.requests) == 1
    # A restarted splunkd passes another session key: it is asked again.
    splunkd.session_key = "after-a-restart"
    with open_state(config("auto"), dict(meta, session_key="after-a-restart"), LOG) as opened:
        assert opened.backend == "local"
    assert info_requests(splunkd) == 2
    # The note is a digest: neither the session key nor the URI is written in the file.
    with open(state_path(str(tmp_path), "prod", DOMAIN), "rb") as handle:
        content = handle.read()
    assert SESSION_KEY.encode() not in content and b"after-a-restart" not in content


def test_auto_remembers_nothing_under_a_splunkd_of_another_address(splunkd, tmp_path):
    meta = metadata(splunkd, tmp_path)
    with open_state(config("auto"), meta, LOG):
        pass
    # Same key, another server_uri (another splunkd): the note does not apply.
    with pytest.raises(StateError):
        with open_state(config("auto"), dict(meta, server_uri="https://127.0.0.1:1"), LOG):
            pass


def test_auto_on_a_cluster_member_or_splunk_cloud_uses_the_kv_store(splunkd, tmp_path):
    splunkd.server_roles = ["search_head", "shc_member", "kv_store"]
    with open_state(config("auto"), metadata(splunkd, tmp_path / "a"), LOG) as opened:
        assert opened.backend == "kvstore"
        opened.state.commit_page(Checkpoint("0001"), ["u1"], [])
    assert [d["user_id"] for d in splunkd.kv_documents(USERS)] == ["u1"]
    splunkd.server_roles = ["search_head"]
    splunkd.instance_type = "cloud"
    with open_state(config("auto"), metadata(splunkd, tmp_path / "b"), LOG) as opened:
        assert opened.backend == "kvstore"
    # A kvstore choice is not remembered: the next run asks server/info again.
    before = info_requests(splunkd)
    with open_state(config("auto"), metadata(splunkd, tmp_path / "b"), LOG) as opened:
        assert opened.backend == "kvstore"
    assert info_requests(splunkd) == before + 1


def test_auto_without_a_session_key_cannot_choose_and_says_so(tmp_path):
    for meta in (
        {"checkpoint_dir": str(tmp_path), "server_uri": "https://127.0.0.1:8089"},
        {"checkpoint_dir": str(tmp_path), "session_key": SESSION_KEY},
        {"checkpoint_dir": str(tmp_path), "server_uri": "not a uri", "session_key": SESSION_KEY},
    ):
        with pytest.raises(StateError) as caught:
            with open_state(config("auto"), meta, LOG):
                pass
        assert str(caught.value) == (
            "splunkd did not pass server_uri and session_key: cannot reach the KV store or server/info"
        )


def test_auto_when_server_info_fails_says_the_status_and_how_to_choose(splunkd, tmp_path):
    splunkd.fail_next(503)
    with pytest.raises(StateError) as caught:
        with open_state(config("auto"), metadata(splunkd, tmp_path), LOG):
            pass
    message = str(caught.value)
    assert message.startswith("cannot read splunkd's server/info to choose where the state lives")
    assert "set local or kvstore to choose yourself" in message and "503" in message
    assert SESSION_KEY not in message
    assert not os.path.exists(state_path(str(tmp_path), "prod", DOMAIN))  # nothing chosen, nothing written


def test_auto_with_an_unreadable_local_file_fails_on_the_file(splunkd, tmp_path):
    path = state_path(str(tmp_path), "prod", DOMAIN)
    with open(path, "wb") as handle:
        handle.write(b"this is not an sqlite database, it is garbage " * 100)
    with pytest.raises(StateError) as caught:
        with open_state(config("auto"), metadata(splunkd, tmp_path), LOG):
            pass
    assert path in str(caught.value)
    assert info_requests(splunkd) == 1  # no remembered choice could be read: splunkd was asked


# -- kvstore -------------------------------------------------------------------------------


def test_kvstore_holds_the_lease_for_the_run_and_releases_it(splunkd, tmp_path):
    with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG) as opened:
        assert opened.backend == "kvstore"
        [lease] = splunkd.kv_documents(LEASES)
        assert lease["member"] == "sh1" and lease["released"] is False
        opened.heartbeat()  # the collector's heartbeat renews it
        [renewed] = splunkd.kv_documents(LEASES)
        assert renewed["expires_at"] >= lease["expires_at"] and renewed["member"] == "sh1"
    [released] = splunkd.kv_documents(LEASES)
    assert released["released"] is True


def test_the_lease_names_the_host_when_splunkd_does_not(splunkd, tmp_path):
    with open_state(config("kvstore"), metadata(splunkd, tmp_path, server_host=None), LOG):
        [lease] = splunkd.kv_documents(LEASES)
    assert lease["member"] == os.uname().nodename


def test_kvstore_not_ready_stops_the_run_and_never_falls_back(splunkd, tmp_path):
    splunkd.kvstore_status = "starting"
    with pytest.raises(KVStoreError) as caught:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG):
            pass
    assert str(caught.value).startswith("the KV store is not ready (kvStoreStatus=starting)")
    assert not os.path.exists(state_path(str(tmp_path), "prod", DOMAIN))  # no local file either
    splunkd.server_roles = ["shc_member"]
    with pytest.raises(KVStoreError):  # auto on a member: the same
        with open_state(config("auto"), metadata(splunkd, tmp_path), LOG):
            pass


def test_kvstore_when_server_info_fails_says_why_it_asked(splunkd, tmp_path):
    splunkd.fail_next(500)
    with pytest.raises(StateError) as caught:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG):
            pass
    assert str(caught.value).startswith("cannot read splunkd's server/info to check that the KV store is ready: 500")


def test_kvstore_keeps_the_token_in_the_local_file_not_the_kv_store(splunkd, tmp_path):
    with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG) as opened:
        opened.token_cache.save_token(token())
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        assert local.token().access_token == "at-cid"
    for collection in (STATE, USERS, LEASES):
        assert "at-cid" not in repr(splunkd.kv_documents(collection))


def test_kvstore_without_a_usable_checkpoint_dir_keeps_the_token_for_the_run_only(splunkd, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, blocker), LOG) as opened:
            assert isinstance(opened.token_cache, MemoryTokenCache)
            assert opened.backend == "kvstore"
    [warning] = [r for r in records if r.levelno == logging.WARNING]
    assert "cannot open the checkpoint file" in warning.getMessage()
    assert warning.getMessage().endswith("; the access token is kept for this run only")


def test_a_local_state_is_carried_over_once_and_the_file_marked_migrated(splunkd, tmp_path):
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        local.commit_page(Checkpoint("0042", "2026-11-19T00:00:00.000Z"), ["u1", "u2", "u3"], ["u2"])
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG) as opened:
            assert opened.state.checkpoint() == Checkpoint("0042", "2026-11-19T00:00:00.000Z")
            assert opened.state.known_users(["u1", "u3", "u9"]) == {"u1", "u3"}
            assert opened.state.pending_flags() == ["u2"]
            opened.state.commit_page(Checkpoint("0043"), ["u9"], [])
    [carried] = [m for m in messages(records) if "carried this input's local state over" in m]
    assert "checkpoint log_id 0042, 3 known users, 1 pending flag writes" in carried
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        migrated = local.migrated_at()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", migrated)
    # Once: the next run goes on from the KV store, the old file is not read again.
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG) as opened:
            assert opened.state.checkpoint() == Checkpoint("0043")
    assert not [m for m in messages(records) if "carried" in m]
    # And a switch back to local is refused: its file is out of date.
    with pytest.raises(StateError, match="moved to the KV store"):
        with open_state(config("local"), {"checkpoint_dir": str(tmp_path)}, LOG):
            pass


def test_a_kv_store_that_has_state_is_not_overwritten_by_a_local_file(splunkd, tmp_path):
    with open_state(config("kvstore"), metadata(splunkd, tmp_path / "sh2"), LOG) as opened:
        opened.state.commit_page(Checkpoint("0100"), ["shared"], [])
    with StateStore.open(str(tmp_path / "sh1"), "prod", DOMAIN) as local:
        local.commit_page(Checkpoint("0001"), ["old"], [])
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path / "sh1"), LOG) as opened:
            assert opened.state.checkpoint() == Checkpoint("0100")
    assert not [m for m in messages(records) if "carried" in m]


def test_an_empty_local_file_carries_nothing_over(splunkd, tmp_path):
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        local.save_token(token())  # a token only: no state
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG) as opened:
            assert opened.state.checkpoint() is None
    assert not [m for m in messages(records) if "carried" in m]
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        assert local.migrated_at() is None


def test_a_lease_that_cannot_be_released_is_a_warning_not_a_failure(splunkd, tmp_path):
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG):
            splunkd.kvstore_status = "starting"  # the KV store goes away at the end of the run
    [warning] = [m for m in messages(records) if m.startswith("could not release this input's lease")]
    assert "(it expires by itself)" in warning and "503" in warning


# -- the token a validation may reuse -----------------------------------------------------


def test_cached_token_is_the_runs_valid_token_of_the_same_client(tmp_path):
    meta = {"checkpoint_dir": str(tmp_path)}
    assert cached_token(config("local"), meta) is None  # no file: none
    assert not os.path.exists(state_path(str(tmp_path), "prod", DOMAIN))  # and none created
    keep_token(config("local"), meta, token())
    cache = cached_token(config("local"), meta)
    assert cache is not None and cache.token().access_token == "at-cid"
    assert cached_token(config("local", client_id="other"), meta) is None  # another client's


def test_cached_token_near_its_expiry_is_not_reused(tmp_path):
    meta = {"checkpoint_dir": str(tmp_path)}
    keep_token(config("local"), meta, token(expires_in=TOKEN_RENEW_MARGIN - 60))
    assert cached_token(config("local"), meta) is None
    keep_token(config("local"), meta, token(expires_in=TOKEN_RENEW_MARGIN + 60))
    assert cached_token(config("local"), meta) is not None
    keep_token(config("local"), meta, None)
    assert cached_token(config("local"), meta) is None


def test_cached_token_in_an_unreadable_file_is_none(tmp_path):
    path = state_path(str(tmp_path), "prod", DOMAIN)
    with open(path, "wb") as handle:
        handle.write(b"garbage, not sqlite " * 200)
    assert cached_token(config("local"), {"checkpoint_dir": str(tmp_path)}) is None


def test_keep_token_is_best_effort(tmp_path):
    keep_token(config("local"), {}, token())  # splunkd said nowhere: nothing written
    assert os.listdir(tmp_path) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    keep_token(config("local"), {"checkpoint_dir": str(blocker)}, token())  # cannot: no error
    keep_token(config("local"), {"checkpoint_dir": str(tmp_path / "dir")}, token())
    with StateStore.open(str(tmp_path / "dir"), "prod", DOMAIN) as local:
        assert local.token().client_id == "cid"


def test_the_migration_date_is_utc_whatever_the_hosts_time_zone(splunkd, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local date would be another day
    time.tzset()
    try:
        with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
            local.commit_page(Checkpoint("0001"), ["u1"], [])
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG):
            pass
        with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
            migrated = time.mktime(time.strptime(local.migrated_at(), "%Y-%m-%dT%H:%M:%SZ"))
        migrated -= time.timezone  # strptime read it as local time: back to UTC
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert abs(migrated - time.time()) < 120


def test_a_local_state_without_a_checkpoint_is_carried_over_too(splunkd, tmp_path):
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        local.set_start_date("2026-11-20T00:00:00.000Z")  # start_from = now, no page yet
    with logged() as records:
        with open_state(config("kvstore"), metadata(splunkd, tmp_path), LOG) as opened:
            assert opened.state.start_date() == "2026-11-20T00:00:00.000Z"
            assert opened.state.checkpoint() is None
    [carried] = [m for m in messages(records) if "carried this input's local state over" in m]
    assert "checkpoint log_id -, 0 known users, 0 pending flag writes" in carried


def test_the_run_talks_to_splunkd_over_one_kept_alive_connection(start_splunkd, tmp_path):
    from tests.unit.test_splunk_rest import RecordingSplunkd

    recording = start_splunkd(SESSION_KEY, RecordingSplunkd)
    recording.server_roles = ["shc_member"]
    with open_state(config("auto"), metadata(recording, tmp_path), LOG) as opened:
        opened.state.commit_page(Checkpoint("0001"), ["u1"], ["u1"])
        opened.heartbeat()
    assert len(recording.seen) > 8
    assert {headers["user-agent"].split("/")[0] for _, _, headers in recording.seen} == {"TA-auth0"}
    assert {headers["connection"] for _, _, headers in recording.seen} == {"keep-alive"}


def test_without_a_checkpoint_dir_the_state_and_token_are_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_state(config("local"), {}, LOG) as opened:
        opened.token_cache.save_token(token())
    assert os.path.exists(state_path(".", "prod", DOMAIN))
    assert cached_token(config("local"), {}).token().access_token == "at-cid"
