"""More of the KV store backend against the fake splunkd: what each failed
call says, the batches within the KV store's limits, the documents it
writes, the order of pending flag writes, the carry-over of a local file,
and the lease's newest generation."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from splunklib import client

from ta_auth0.kvstate import (
    FLAGS,
    LEASES,
    MAX_BYTES_PER_BATCH,
    STATE,
    USERS,
    KVStateStore,
    KVStoreError,
    _batches,
    collections,
)
from ta_auth0.lease import Lease
from ta_auth0.state import Checkpoint, StateStore, state_id
from tests.fakes.splunkd import APP, FakeSplunkd

SESSION_KEY = "unit-kv-more-session-key"
DOMAIN = "example.auth0.com"


@pytest.fixture
def splunkd(start_splunkd):
    return start_splunkd(SESSION_KEY)


def make_service(splunkd):
    uri = urlsplit(splunkd.server_uri)
    return client.Service(scheme="https", host=uri.hostname, port=uri.port, token=SESSION_KEY, owner="nobody", app=APP)


@pytest.fixture
def kv(splunkd):
    return collections(make_service(splunkd))


def store(kv, name="prod", domain=DOMAIN) -> KVStateStore:
    return KVStateStore(kv, name, domain)


# Each call of a collection, and what it is called in an error.
CALLS = [
    ("read", STATE, lambda kv: store(kv)),
    ("insert", LEASES, lambda kv: kv[LEASES].insert_new({"_key": "s.1", "state": "s", "generation": 1})),
    ("update", LEASES, lambda kv: kv[LEASES].update("s.1", {"state": "s"})),
    ("batch_save", USERS, lambda kv: kv[USERS].save([{"_key": "k", "user_id": "u"}])),
    ("query", FLAGS, lambda kv: kv[FLAGS].query(query={"state": "s"})),
    ("batch_find", USERS, lambda kv: kv[USERS].find([{"query": {"_key": "k"}}])),
    ("delete", FLAGS, lambda kv: kv[FLAGS].delete_where({"state": "s"})),
]


@pytest.mark.parametrize("what, collection, call", CALLS, ids=[c[0] for c in CALLS])
def test_a_failed_kv_store_call_says_which_call_on_which_collection_and_why(splunkd, kv, what, collection, call):
    splunkd.fail_next(500)
    with pytest.raises(KVStoreError) as caught:
        call(kv)
    assert str(caught.value) == f"KV store {what} on collection {collection} failed: 500 Internal Server Error"
    assert SESSION_KEY not in str(caught.value)
    # A KV store that is not ready (503) stops the run, whatever the call.
    splunkd.kvstore_status = "starting"
    with pytest.raises(KVStoreError) as caught:
        call(kv)
    assert str(caught.value).startswith("the KV store is not ready (503 ")
    assert "never falls back to a local file" in str(caught.value)
    # An unreachable splunkd.
    splunkd.stop()
    with pytest.raises(KVStoreError) as caught:
        call(kv)
    assert str(caught.value).startswith(f"cannot reach splunkd's KV store ({what} {collection}): ")


def test_listing_the_collections_fails_clearly(splunkd):
    service = make_service(splunkd)
    splunkd.fail_next(500)
    with pytest.raises(KVStoreError) as caught:
        collections(service)
    assert str(caught.value) == "KV store list on collection config failed: 500 Internal Server Error"
    splunkd.stop()
    with pytest.raises(KVStoreError) as caught:
        collections(service)
    assert str(caught.value).startswith("cannot reach splunkd's KV store: ")


def test_every_missing_collection_is_named(server_context):
    with FakeSplunkd(server_context, session_key=SESSION_KEY) as partial:
        partial.add_collection(STATE)
        partial.add_collection(USERS)
        with pytest.raises(KVStoreError) as caught:
            collections(make_service(partial))
    assert str(caught.value).startswith(f"the KV store has no collection {FLAGS}, {LEASES} in app TA-auth0")


# -- batches ---------------------------------------------------------------------------------


def test_a_batch_save_holds_at_most_1000_documents(splunkd, kv):
    docs = [{"_key": f"k{i}", "user_id": f"u{i}"} for i in range(1001)]
    assert [len(b) for b in _batches(docs)] == [1000, 1]
    assert [len(b) for b in _batches(docs[:1000])] == [1000]
    kv[USERS].save(docs)
    assert len([r for r in splunkd.requests if r[1].endswith(f"/{USERS}/batch_save")]) == 2
    assert len(splunkd.kv_documents(USERS)) == 1001


def test_a_batch_save_stays_under_8_mib(splunkd):
    big = "x" * (3 * 1024 * 1024)  # 3 MiB each: two fit in 8 MiB, three do not
    docs = [{"_key": f"k{i}", "last_error": big} for i in range(5)]
    batches = list(_batches(docs))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(len(json.dumps(b)) <= MAX_BYTES_PER_BATCH for b in batches)


# -- the documents ---------------------------------------------------------------------------


def test_each_input_and_tenant_has_its_own_state(kv):
    store(kv).commit_page(Checkpoint("0001"), ["u1"], [])
    assert store(kv, name="other").checkpoint() is None
    assert store(kv, domain="other.auth0.com").checkpoint() is None
    assert store(kv, name="other").known_users(["u1"]) == set()
    assert store(kv).checkpoint() == Checkpoint("0001")


def test_the_documents_name_the_input_its_state_and_the_page(splunkd, kv):
    before = time.time()
    s = store(kv)
    s.commit_page(Checkpoint("0001", "2026-11-20T00:00:00.000Z"), ["u1"], ["u1"])
    s.commit_page(Checkpoint("0002"), ["u2"], [])
    [doc] = splunkd.kv_documents(STATE)
    sid = state_id("prod", DOMAIN)
    assert doc["_key"] == sid and doc["input"] == "prod" and doc["domain"] == DOMAIN
    assert doc["seq"] == 2 and doc["last_log_id"] == "0002"
    assert before <= doc["updated_at"] <= time.time()
    users = {d["user_id"]: d for d in splunkd.kv_documents(USERS)}
    assert {d["state"] for d in users.values()} == {sid} and users["u1"]["seq"] == 1 and users["u2"]["seq"] == 2
    [flag] = splunkd.kv_documents(FLAGS)
    assert flag["state"] == sid and flag["seq"] == 1 and before <= flag["queued_at"] <= time.time()


def test_a_page_without_a_checkpoint_keeps_the_last_one(kv):
    s = store(kv)
    s.commit_page(Checkpoint("0001"), ["u1"], [])
    s.commit_page(None, ["u2"], [])
    assert store(kv).checkpoint() == Checkpoint("0001")
    assert store(kv).known_users(["u1", "u2"]) == {"u1", "u2"}


def test_setting_the_start_date_keeps_what_was_committed(kv):
    s = store(kv)
    s.commit_page(Checkpoint("0001"), ["u1"], ["u1"])
    s.set_start_date("2026-11-20T00:00:00.000Z")
    again = store(kv)
    assert again.start_date() == "2026-11-20T00:00:00.000Z"
    assert again.known_users(["u1"]) == {"u1"} and again.pending_flags() == ["u1"]


# -- pending flag writes ---------------------------------------------------------------------


def test_pending_flags_come_oldest_first_and_a_failure_keeps_its_place(splunkd, kv):
    s = store(kv)
    s.commit_page(Checkpoint("1"), [], ["zz"])
    s.commit_page(Checkpoint("2"), [], ["mm"])
    s.commit_page(Checkpoint("3"), [], ["aa"])
    before = len(splunkd.requests)
    assert s.pending_flags() == ["zz", "mm", "aa"]
    [query] = [parse_qs(urlsplit(path).query) for _, path, _ in splunkd.requests[before:]]
    assert query["sort"] == ["queued_at,user_id"] and query["limit"] == ["100"]  # asked of the KV store, not luck
    assert query["fields"] == ["user_id"]
    s.flag_failed("aa", "429 too many requests")
    s.flag_failed("aa", "503 unavailable")
    assert s.pending_flags() == ["zz", "mm", "aa"]
    [doc] = kv[FLAGS].query(query={"user_id": "aa"})
    assert doc["attempts"] == 2 and doc["last_error"] == "503 unavailable"
    s.flag_failed("gone", "x")  # not pending (any more): nothing written
    assert len(kv[FLAGS].query(query={})) == 3


def test_pending_flags_come_a_hundred_at_a_time(kv):
    s = store(kv)
    s.commit_page(Checkpoint("1"), [], [f"u{i:03}" for i in range(101)])
    assert len(s.pending_flags()) == 100
    assert s.pending_count() == 101


def test_pending_count_pages_in_a_stable_order(splunkd, kv):
    s = store(kv)
    s.commit_page(Checkpoint("1"), [], ["a", "b"])
    before = len(splunkd.requests)
    assert s.pending_count() == 2
    queries = [parse_qs(urlsplit(path).query) for _, path, _ in splunkd.requests[before:]]
    assert [q["skip"] for q in queries] == [["0"], ["2"]]
    assert all(q["sort"] == ["_key"] and q["limit"] == ["50000"] and q["fields"] == ["_key"] for q in queries)


def test_flag_writes_done_are_deleted_forty_at_a_time_and_only_those(splunkd, kv):
    s = store(kv)
    s.commit_page(Checkpoint("1"), [], [f"u{i:02}" for i in range(41)])
    for i in range(39):
        s.flag_done(f"u{i:02}")
    assert len(splunkd.kv_documents(FLAGS)) == 41  # not yet: deleted in batches
    s.flag_done("u39")
    assert len(splunkd.kv_documents(FLAGS)) == 1  # 40 done: deleted at once
    s.flag_done("u40")
    s.close()
    assert splunkd.kv_documents(FLAGS) == []


def test_a_flag_done_deletes_only_its_own_document(splunkd, kv):
    s = store(kv)
    s.commit_page(Checkpoint("1"), [], ["a", "b"])
    s.flag_done("a")
    s.close()
    assert [d["user_id"] for d in splunkd.kv_documents(FLAGS)] == ["b"]


# -- carrying a local state over -------------------------------------------------------------


def test_a_local_state_comes_over_as_page_one_with_its_flags_history(splunkd, kv, tmp_path):
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        local.set_start_date("2026-11-01T00:00:00.000Z")
        local.commit_page(Checkpoint("0009", "2026-11-02T00:00:00.000Z"), ["u1"], ["late"])
        local.commit_page(Checkpoint("0010"), ["u2"], ["early"])
        local.flag_failed("late", "429 rate limited")
        assert store(kv).import_local(local) == (2, 2)
    s = store(kv)
    assert s.checkpoint() == Checkpoint("0010") and s.start_date() == "2026-11-01T00:00:00.000Z"
    assert s.pending_flags() == ["late", "early"]  # the local queue's order
    flags = {d["user_id"]: d for d in splunkd.kv_documents(FLAGS)}
    assert flags["late"]["attempts"] == 1 and flags["late"]["last_error"] == "429 rate limited"
    assert {d["seq"] for d in splunkd.kv_documents(USERS)} == {1} and splunkd.kv_documents(STATE)[0]["seq"] == 1
    assert {d["state"] for d in splunkd.kv_documents(USERS)} == {state_id("prod", DOMAIN)}


def test_a_local_state_with_only_a_start_date_comes_over(kv, tmp_path):
    with StateStore.open(str(tmp_path), "prod", DOMAIN) as local:
        local.set_start_date("2026-11-01T00:00:00.000Z")
        assert store(kv).import_local(local) == (0, 0)
    assert store(kv).start_date() == "2026-11-01T00:00:00.000Z" and store(kv).checkpoint() is None
    with StateStore.open(str(tmp_path / "b"), "other", DOMAIN) as local:
        local.commit_page(Checkpoint("0001"), ["u1"], [])  # no start date: none written
        store(kv, name="other").import_local(local)
    assert store(kv, name="other").start_date() is None


# -- the lease's newest generation -----------------------------------------------------------


def test_the_next_generation_follows_the_newest_in_whatever_order_they_were_stored(splunkd, kv):
    now = time.time()
    for generation in (1, 2):
        splunkd.kv_put(
            LEASES,
            {
                "_key": f"s1.{generation:012d}",
                "state": "s1",
                "generation": generation,
                "member": "old",
                "expires_at": now - 1,
                "released": False,
            },
        )
    lease = Lease(kv[LEASES], "s1", "sh1")
    before = len(splunkd.requests)
    lease.acquire()
    assert lease.generation == 3
    newest = parse_qs(urlsplit(splunkd.requests[before][1]).query)
    assert newest["sort"] == ["generation:-1"] and newest["limit"] == ["1"]  # the newest link only
    assert [d["generation"] for d in splunkd.kv_documents(LEASES)] == [3]


def test_a_users_documents_keep_the_key_earlier_versions_gave_them(kv):
    """The state's id, a dot, and the first 32 hex digits of sha256(user_id):
    after an upgrade the add-on finds the users and flags stored before."""
    s = store(kv)
    s.commit_page(Checkpoint("1"), ["auth0|alice"], ["auth0|alice"])
    key = f"{state_id('prod', DOMAIN)}.4a761a4752f6b74491860f50fc7d4fa9"  # sha256("auth0|alice"), worked out once
    assert [doc["_key"] for doc in kv[USERS].query(query={})] == [key]
    assert [doc["_key"] for doc in kv[FLAGS].query(query={})] == [key]
