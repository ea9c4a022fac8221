"""The per-input sqlite store: one query per page, atomic commits, 0600."""

import os
import sqlite3
import stat

import pytest

from ta_auth0.state import CachedToken, Checkpoint, StateStore, state_path


@pytest.fixture
def store(tmp_path):
    with StateStore.open(str(tmp_path), "prod", "example.auth0.com") as opened:
        yield opened


def test_new_store_is_empty_and_private(store):
    assert store.checkpoint() is None
    assert store.known_users(["a"]) == set()
    assert store.pending_flags() == []
    assert store.token() is None
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_path_is_per_input_and_domain(tmp_path):
    base = str(tmp_path)
    assert state_path(base, "prod", "a.auth0.com") != state_path(base, "prod", "b.auth0.com")
    assert state_path(base, "prod", "a.auth0.com") != state_path(base, "test", "a.auth0.com")
    assert os.path.dirname(state_path(base, "../../etc/x", "a.auth0.com")) == base


def test_commit_page_moves_checkpoint_and_users_together(store):
    store.commit_page(Checkpoint("0001", "2026-11-20T00:00:00.000Z"), ["u1", "u2"], ["u1"])
    assert store.checkpoint() == Checkpoint("0001", "2026-11-20T00:00:00.000Z")
    assert store.known_users(["u1", "u2", "u3"]) == {"u1", "u2"}
    assert store.pending_flags() == ["u1"]
    store.flag_done("u1")
    assert store.pending_count() == 0


def test_failed_commit_changes_nothing(store):
    store.commit_page(Checkpoint("0001"), ["u1"], [])

    def boom():
        yield "u2"
        raise RuntimeError("crash in the middle of a commit")

    with pytest.raises(RuntimeError):
        store.commit_page(Checkpoint("0002"), boom(), [])
    assert store.checkpoint().log_id == "0001"
    assert store.known_users(["u2"]) == set()


def test_state_survives_reopen(tmp_path):
    with StateStore.open(str(tmp_path), "prod", "d.auth0.com") as first:
        first.commit_page(Checkpoint("0042"), ["u"], ["u"])
        first.save_token(CachedToken("tok", 123.5, "cid", "read:logs"))
        first.flag_failed("u", "429")
    with StateStore.open(str(tmp_path), "prod", "d.auth0.com") as second:
        assert second.checkpoint().log_id == "0042"
        assert second.known_users(["u"]) == {"u"}
        assert second.pending_flags() == ["u"]
        assert second.token() == CachedToken("tok", 123.5, "cid", "read:logs")
        second.save_token(None)
        assert second.token() is None


def test_known_users_handles_more_than_sqlite_parameter_limit(store):
    ids = [f"u{i}" for i in range(1500)]
    store.commit_page(None, ids, [])
    assert store.known_users(ids + ["other"]) == set(ids)


def test_known_users_lookup_is_indexed(store):
    # The cost per page must not grow with what is stored: the lookup is a
    # primary-key search, never a scan.
    plan = store._db.execute("EXPLAIN QUERY PLAN SELECT user_id FROM known_users WHERE user_id IN (?)", ["x"])
    assert "SCAN" not in " ".join(str(row) for row in plan)


def test_pending_flags_oldest_first(store):
    store.commit_page(None, [], ["b"])
    store.commit_page(None, [], ["a"])
    assert store.pending_flags(limit=1) == ["b"]


def test_unreadable_location_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    from ta_auth0.state import StateError

    with pytest.raises(StateError, match="cannot open the checkpoint file"):
        StateStore.open(str(blocker), "prod", "d")


def test_file_is_a_plain_sqlite_database(store):
    store.commit_page(Checkpoint("7"), [], [])
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='last_log_id'").fetchone() == ("7",)


def test_any_part_of_a_state_counts_as_state(tmp_path):
    """What a move to the KV store carries over (kvstate.migrate_local)."""
    cases = {
        "checkpoint": lambda s: s.commit_page(Checkpoint("0001", None)),
        "start date": lambda s: s.set_start_date("2026-11-20T00:00:00.000Z"),
        "known user": lambda s: s.commit_page(None, ["u1"]),
        "pending flag only": lambda s: s.commit_page(None, [], ["u1"]),
    }
    for name, make in cases.items():
        with StateStore.open(str(tmp_path / name.replace(" ", "_")), "prod", "example.auth0.com") as store:
            assert not store.has_state(), name
            make(store)
            assert store.has_state(), name


def test_a_failed_flag_write_keeps_its_last_error_bounded(store):
    store.commit_page(None, ["u1"], ["u1"])
    store.flag_failed("u1", "x" * 600)
    store.flag_failed("u1", "E" * 500 + "tail")
    (pending,) = store.all_pending_flags()
    assert pending.user_id == "u1" and pending.attempts == 2
    assert pending.last_error == "E" * 500


def test_the_auto_choice_and_the_migration_mark_are_remembered(tmp_path):
    with StateStore.open(str(tmp_path), "prod", "example.auth0.com") as store:
        assert store.auto_choice() is None and store.migrated_at() is None
        store.set_auto_choice("kvstore")
        store.mark_migrated("2026-12-01T00:00:00Z")
    with StateStore.open(str(tmp_path), "prod", "example.auth0.com") as again:
        assert again.auto_choice() == "kvstore"
        assert again.migrated_at() == "2026-12-01T00:00:00Z"
        assert again.checkpoint() is None  # neither is a checkpoint


def test_all_known_users_and_flags_are_listed_in_order(store):
    store.commit_page(None, ["u3", "u1", "u2"], ["u2"])
    store.commit_page(None, [], ["u1"])
    assert list(store.all_known_users()) == ["u1", "u2", "u3"]
    assert [flag.user_id for flag in store.all_pending_flags()] == ["u2", "u1"]
    assert store.known_user_count() == 3


def test_the_file_name_is_the_input_name_made_safe_and_the_state_id(tmp_path):
    from ta_auth0.state import state_id

    base = str(tmp_path)
    name = "Prod EU/1" + "x" * 70
    expected = f"ta_auth0-Prod_EU_1{'x' * 55}-{state_id(name, 'a.auth0.com')}.sqlite"
    assert state_path(base, name, "a.auth0.com") == os.path.join(base, expected)
    assert len(state_id(name, "a.auth0.com")) == 16
    assert StateStore.open(base, "prod", "a.auth0.com").path == state_path(base, "prod", "a.auth0.com")


def test_a_file_name_without_a_folder_is_opened_where_we_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    StateStore("state.sqlite").close()
    assert sorted(os.listdir(tmp_path))[0] == "state.sqlite"
    assert all(name.startswith("state.sqlite") for name in os.listdir(tmp_path))


def test_the_schema_version_is_recorded(store):
    from ta_auth0.state import SCHEMA_VERSION

    rows = sqlite3.connect(store.path).execute("SELECT key, value FROM meta").fetchall()
    assert ("schema_version", SCHEMA_VERSION) in rows


def test_pending_flags_come_a_hundred_at_a_time(store):
    store.commit_page(None, [], [f"u{n:03d}" for n in range(150)])
    assert len(store.pending_flags()) == 100
    assert len(store.pending_flags(limit=150)) == 150


def test_a_token_needs_all_three_parts(store):
    store.save_token(CachedToken("at", 2_000_000_000.0, "cid"))
    assert store.token() == CachedToken("at", 2_000_000_000.0, "cid", "")
    for key in ("token", "token_expires_at", "token_client_id"):
        store.save_token(CachedToken("at", 2_000_000_000.0, "cid", "read:logs"))
        store._set(key, None)  # half a token (save_token never writes one; read defensively)
        assert store.token() is None, key
