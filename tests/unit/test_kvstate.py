"""The KV store backend and its lease, against the fake splunkd through splunklib:
the commit protocol, one interface for both backends, the KV store's limits."""

from __future__ import annotations

import inspect
import os
import re
import time
from urllib.parse import urlsplit

import pytest
from splunklib import client

from ta_auth0.kvstate import FLAGS, LEASES, STATE, USERS, KVStateStore, KVStoreError, collections
from ta_auth0.lease import LEASE_TTL_SECONDS, Lease, LeaseHeld, LeaseLost
from ta_auth0.state import Checkpoint, StateBackend, StateStore
from tests.fakes.splunkd import APP, FakeSplunkd

SESSION_KEY = "unit-kv-session-key"


@pytest.fixture
def splunkd(start_splunkd):
    return start_splunkd(SESSION_KEY)


@pytest.fixture
def kv(splunkd):
    uri = urlsplit(splunkd.server_uri)
    service = client.Service(
        scheme="https", host=uri.hostname, port=uri.port, token=SESSION_KEY, owner="nobody", app=APP
    )
    return collections(service)


def open_store(kv) -> KVStateStore:
    return KVStateStore(kv, "prod", "example.auth0.com")


def test_both_backends_offer_the_collectors_interface():
    wanted = {
        name: inspect.signature(member)
        for name, member in vars(StateBackend).items()
        if callable(member) and not name.startswith("_") or name in ("__enter__", "__exit__")
    }
    assert {"checkpoint", "commit_page", "known_users", "pending_flags", "flag_done", "close"} <= set(wanted)
    for backend in (StateStore, KVStateStore):
        for name, signature in wanted.items():
            mine = inspect.signature(getattr(backend, name))
            assert list(mine.parameters) == list(signature.parameters), (backend.__name__, name)


def test_a_new_state_is_empty_and_commits_move_everything_together(kv):
    store = open_store(kv)
    assert store.checkpoint() is None and store.start_date() is None
    assert store.known_users(["u1"]) == set()
    store.set_start_date("2026-11-20T00:00:00.000Z")
    store.commit_page(Checkpoint("0001", "2026-11-20T00:00:01.000Z"), ["u1", "u2"], ["u1"])
    again = open_store(kv)  # another process, another member: the same state
    assert again.checkpoint() == Checkpoint("0001", "2026-11-20T00:00:01.000Z")
    assert again.start_date() == "2026-11-20T00:00:00.000Z"
    assert again.known_users(["u1", "u2", "u3"]) == {"u1", "u2"}
    assert again.pending_flags() == ["u1"] and again.pending_count() == 1
    again.flag_done("u1")
    again.close()
    assert open_store(kv).pending_count() == 0


def test_a_commit_cut_short_before_the_state_write_teaches_nothing(splunkd, kv):
    store = open_store(kv)
    store.commit_page(Checkpoint("0001"), ["old"], [])

    def die_before_the_state_write(method, collection, tail):
        if collection == FLAGS:  # users and flags landed; the KV store goes away now
            splunkd.kvstore_status = "starting"

    splunkd.kv_hook = die_before_the_state_write
    with pytest.raises(KVStoreError):
        store.commit_page(Checkpoint("0002"), ["new"], ["new"])
    splunkd.kv_hook, splunkd.kvstore_status = None, "ready"
    assert {d["user_id"] for d in splunkd.kv_documents(USERS)} == {"old", "new"}  # written, but not committed
    replay = open_store(kv)
    assert replay.checkpoint() == Checkpoint("0001")
    assert replay.known_users(["old", "new"]) == {"old"}  # the page classifies as the first time
    assert replay.pending_flags() == [] and replay.pending_count() == 0
    replay.commit_page(Checkpoint("0002"), ["new"], ["new"])  # the replay writes the same keys
    assert open_store(kv).known_users(["old", "new"]) == {"old", "new"}
    assert open_store(kv).pending_flags() == ["new"]
    assert len(splunkd.kv_documents(USERS)) == 2 and len(splunkd.kv_documents(FLAGS)) == 1


def test_flag_failures_are_counted_and_kept(kv):
    store = open_store(kv)
    store.commit_page(Checkpoint("1"), ["a", "b"], ["a", "b"])
    store.flag_failed("a", "429 " + "x" * 1000)
    [doc] = [d for d in kv[FLAGS].query(query={"user_id": "a"})]
    assert doc["attempts"] == 1 and len(doc["last_error"]) == 500
    assert sorted(store.pending_flags()) == ["a", "b"]


def test_each_batch_save_stays_within_1000_documents(splunkd, kv, tmp_path):
    with StateStore.open(str(tmp_path), "prod", "example.auth0.com") as local:
        local.commit_page(Checkpoint("0099", "2026-11-01T00:00:00.000Z"), [f"u{i}" for i in range(2500)], ["u1"])
        users, flags = open_store(kv).import_local(local)
    assert (users, flags) == (2500, 1)
    saves = [r for r in splunkd.requests if r[1].endswith(f"/{USERS}/batch_save")]
    assert len(saves) == 3  # 1000 + 1000 + 500: the KV store refuses more per batch_save
    store = open_store(kv)
    assert store.checkpoint() == Checkpoint("0099", "2026-11-01T00:00:00.000Z")
    assert store.known_users(["u0", "u2499", "nobody"]) == {"u0", "u2499"}


def test_known_users_is_one_request_per_page_whatever_is_stored(splunkd, kv):
    store = open_store(kv)
    store.commit_page(Checkpoint("1"), [f"u{i}" for i in range(900)], [])
    before = len(splunkd.requests)
    assert store.known_users([f"u{i}" for i in range(850, 950)]) == {f"u{i}" for i in range(850, 900)}
    assert [r[1].rsplit("/", 1)[-1] for r in splunkd.requests[before:]] == ["batch_find"]


def test_pending_count_pages_through_the_rows_per_query_limit(splunkd, kv):
    splunkd.kv_limits.max_rows_per_query = 7  # 50 000 by default: the same rule, smaller
    store = open_store(kv)
    store.commit_page(Checkpoint("1"), [], [f"u{i}" for i in range(20)])
    assert store.pending_count() == 20


def test_a_missing_collection_is_a_clear_error(server_context):
    with FakeSplunkd(server_context, session_key=SESSION_KEY) as bare:
        uri = urlsplit(bare.server_uri)
        service = client.Service(host=uri.hostname, port=uri.port, token=SESSION_KEY, owner="nobody", app=APP)
        with pytest.raises(KVStoreError) as caught:
            collections(service)
    assert "collections.conf" in str(caught.value) and STATE in str(caught.value)


# -- the lease -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_member_holds_the_lease_the_other_steps_aside(kv):
    clock = Clock()
    sh1, sh2 = Lease(kv[LEASES], "s1", "sh1", clock), Lease(kv[LEASES], "s1", "sh2", clock)
    sh1.acquire()
    with pytest.raises(LeaseHeld) as caught:
        sh2.acquire()
    assert "sh1" in str(caught.value) and "steps aside" in str(caught.value)
    Lease(kv[LEASES], "other-input", "sh2", clock).acquire()  # leases are per input


def test_a_stale_lease_is_taken_over_and_its_holder_stops_at_its_next_page(splunkd, kv):
    clock = Clock()
    sh1, sh2 = Lease(kv[LEASES], "s1", "sh1", clock), Lease(kv[LEASES], "s1", "sh2", clock)
    sh1.acquire()
    clock.now += LEASE_TTL_SECONDS - 1
    sh1.renew()  # renewed: good for another TTL
    clock.now += LEASE_TTL_SECONDS - 1
    with pytest.raises(LeaseHeld):
        sh2.acquire()
    clock.now += 2  # sh1 stopped renewing: expired
    sh2.acquire()
    assert [d["generation"] for d in splunkd.kv_documents(LEASES)] == [2]  # older generations deleted
    with pytest.raises(LeaseLost):
        sh1.renew()
    sh1.release()  # not its lease any more: left alone
    assert splunkd.kv_documents(LEASES)[0]["member"] == "sh2"


def test_a_released_lease_is_free_at_once_and_a_members_own_dead_run_is_taken_over(kv):
    clock = Clock()
    first = Lease(kv[LEASES], "s1", "sh1", clock)
    first.acquire()
    Lease(kv[LEASES], "s1", "sh1", clock).acquire()  # same member: the earlier run died
    with pytest.raises(LeaseLost):
        first.renew()
    current = Lease(kv[LEASES], "s1", "sh1", clock)
    current.acquire()
    current.release()
    Lease(kv[LEASES], "s1", "sh2", clock).acquire()  # no waiting for the TTL


def test_inserting_a_taken_generation_loses(kv):
    assert kv[LEASES].insert_new({"_key": "s1.000000000001", "state": "s1", "generation": 1}) is True
    assert kv[LEASES].insert_new({"_key": "s1.000000000001", "state": "s1", "generation": 1}) is False


# -- choosing the backend ---------------------------------------------------------------


@pytest.mark.parametrize(
    "info, kvstore",
    [
        ({"server_roles": ["indexer", "license_master", "kv_store"]}, False),  # standalone
        ({"server_roles": ["search_head", "shc_member", "kv_store"]}, True),  # a cluster member
        ({"server_roles": ["shc_captain", "shc_member"]}, True),
        ({"server_roles": ["search_head"], "instance_type": "cloud"}, True),  # Splunk Cloud
        ({"server_roles": "shc_member"}, True),  # a single role may come as text
        ({}, False),
    ],
)
def test_auto_chooses_the_kv_store_on_cluster_members_and_splunk_cloud(info, kvstore):
    from ta_auth0.stores import wants_kvstore

    assert wants_kvstore(info) is kvstore


def test_state_store_parameter():
    from ta_auth0.config import ConfigError, parse_config

    base = {"domain": "example.us.auth0.com", "client_id": "cid", "client_secret": "s"}
    assert parse_config("auth0_activity://a", base).state_store == "auto"
    assert parse_config("auth0_activity://a", dict(base, state_store="KVStore")).state_store == "kvstore"
    with pytest.raises(ConfigError) as caught:
        parse_config("auth0_activity://a", dict(base, state_store="mongo"))
    assert "state_store must be one of auto, local, kvstore" in str(caught.value)


def test_the_run_talks_to_splunkd_over_one_kept_alive_connection(splunkd):
    from ta_auth0.splunkrest import KeepAliveHandler, service

    handler = KeepAliveHandler()
    kv = collections(service(splunkd.server_uri, SESSION_KEY, handler))
    store = open_store(kv)
    for page in range(5):
        store.commit_page(Checkpoint(f"{page:04}"), [f"ü{page}-名"], [f"ü{page}-名"])  # UTF-8 all the way
    assert open_store(kv).known_users(["ü3-名"]) == {"ü3-名"}
    assert handler.connections == 1
    assert len(splunkd.requests) > 15
    handler.close()


def http_error(status, body, reason="Service Unavailable"):
    """splunklib's own HTTPError, built from a response as its binding builds it."""
    from io import BytesIO
    from types import SimpleNamespace

    from splunklib import binding

    return binding.HTTPError(SimpleNamespace(status=status, reason=reason, body=BytesIO(body), headers=[]))


@pytest.mark.parametrize(
    "status, body, expected",
    [
        # splunkd's JSON error: every message's text, in order.
        (503, b'{"messages":[{"type":"ERROR","text":"KV Store is initializing."}]}', "503 KV Store is initializing."),
        (500, b'{"messages":[{"text":"one"},{"type":"WARN"},{"text":"two"}]}', "500 one; two"),
        # No message text: the HTTP reason.
        (404, b'{"messages":[]}', "404 Not Found"),
        (502, b"<html>bad gateway</html>", "502 Not Found"),
        (500, b"", "500 Not Found"),
    ],
)
def test_an_http_error_is_described_by_its_status_and_splunkds_own_words(status, body, expected):
    from ta_auth0.kvstate import describe_http_error

    assert describe_http_error(http_error(status, body, reason="Not Found")) == expected


def test_an_error_without_a_status_is_its_own_message():
    from ta_auth0.kvstate import describe_http_error

    assert describe_http_error(ConnectionResetError("connection reset by peer")) == "connection reset by peer"


def test_a_held_lease_says_who_holds_it_until_when_and_who_steps_aside(kv):
    clock = Clock()
    Lease(kv[LEASES], "s1", "sh1", clock).acquire()
    with pytest.raises(LeaseHeld) as caught:
        Lease(kv[LEASES], "s1", "sh2", clock).acquire()
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now + LEASE_TTL_SECONDS))
    assert str(caught.value) == (
        f"search head sh1 holds this input's lease (until {until} unless renewed): "
        "it collects, this member (sh2) steps aside and writes nothing"
    )


def test_a_lease_is_free_at_its_expiry_and_a_released_one_even_on_a_member_whose_clock_is_behind(kv):
    clock = Clock()
    Lease(kv[LEASES], "s1", "sh1", clock).acquire()
    clock.now += LEASE_TTL_SECONDS
    second = Lease(kv[LEASES], "s1", "sh2", clock)
    second.acquire()  # at its expiry: free
    second.release()
    behind = Clock()
    behind.now = clock.now - 5  # search heads' clocks differ by seconds
    Lease(kv[LEASES], "s1", "sh3", behind).acquire()  # released: free, whatever sh3's clock says


def test_the_lease_document_names_the_member_and_the_run(splunkd, kv):
    Lease(kv[LEASES], "s1", "sh1", Clock()).acquire()
    (doc,) = splunkd.kv_documents(LEASES)
    assert doc["member"] == "sh1" and doc["released"] is False
    assert re.fullmatch(rf"{os.getpid()}-[0-9a-f]{{8}}", doc["run"])


def test_the_next_generation_follows_the_newest_whatever_else_is_stored(splunkd, kv):
    clock = Clock()
    for generation in (2, 1):  # a deletion that has not happened yet
        splunkd.kv_put(
            LEASES,
            {
                "_key": f"s1.{generation:012d}",
                "state": "s1",
                "generation": generation,
                "member": "old",
                "expires_at": clock.now - 1,
                "released": False,
            },
        )
    lease = Lease(kv[LEASES], "s1", "sh1", clock)
    lease.acquire()
    assert lease.generation == 3


def test_losing_the_race_for_a_generation_names_the_winner(kv):
    class Racing:
        """The leases collection, with another member inserting first."""

        def __init__(self, inner, winner):
            self.inner, self.winner = inner, winner

        def insert_new(self, doc):
            if self.winner:
                self.inner.insert_new(dict(doc, member=self.winner))
            return self.inner.insert_new(doc)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    clock = Clock()
    with pytest.raises(LeaseHeld, match=r"^search head sh9 holds this input's lease"):
        Lease(Racing(kv[LEASES], "sh9"), "s1", "sh1", clock).acquire()


def test_a_lease_taken_over_says_by_whom_or_that_it_is_gone(splunkd, kv):
    clock = Clock()
    mine = Lease(kv[LEASES], "s1", "sh1", clock)
    mine.acquire()
    clock.now += LEASE_TTL_SECONDS
    Lease(kv[LEASES], "s1", "sh2", clock).acquire()
    with pytest.raises(LeaseLost) as caught:
        mine.renew()
    assert str(caught.value).startswith("this input's lease was taken over by sh2 while this run waited: it stops here")
    splunkd.kv_clear(LEASES)
    with pytest.raises(LeaseLost) as caught:
        mine.renew()
    assert str(caught.value).startswith("this input's lease was taken over while this run waited")


def test_renew_and_release_without_a_lease_do_nothing(splunkd, kv):
    lease = Lease(kv[LEASES], "s1", "sh1", Clock())
    lease.renew()
    lease.release()
    assert splunkd.kv_documents(LEASES) == []
    lease.acquire()
    lease.release()
    lease.renew()  # released: no longer ours to renew
    assert splunkd.kv_documents(LEASES)[0]["released"] is True
