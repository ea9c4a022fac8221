"""The fake splunkd's KV store driven through splunklib 2.1.1's ``service.kvstore``,
the client the add-on uses. Expected answers are those of Splunk's REST API
reference for the KV store endpoints and of limits.conf [kvstore]."""

from __future__ import annotations

import json
import ssl
from urllib.parse import urlsplit

import pytest
import trustme
from splunklib import binding, client

from tests.addon import APP_DIR
from tests.fakes.splunkd import APP, FakeSplunkd

SESSION_KEY = "kv-session-key-0123456789"
NS = f"/servicesNS/nobody/{APP}"


@pytest.fixture(scope="module")
def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def splunkd(server_context):
    with FakeSplunkd(server_context, session_key=SESSION_KEY) as fake:
        fake.add_collection("things", accelerated_fields={"by_owner": {"owner": 1, "rank": 1}})
        yield fake


@pytest.fixture
def service(splunkd):
    uri = urlsplit(splunkd.server_uri)
    return client.Service(
        scheme=uri.scheme, host=uri.hostname, port=uri.port, token=SESSION_KEY, owner="nobody", app=APP
    )


@pytest.fixture
def things(service):
    return service.kvstore["things"].data


def test_collections_are_listed_and_read_with_their_accelerations(splunkd, service):
    assert [c.name for c in service.kvstore] == ["things"]
    things = service.kvstore["things"]
    assert things.content["accelerated_fields.by_owner"] == {"owner": 1, "rank": 1}  # splunklib decodes it
    assert (things.access.app, things.access.sharing) == (APP, "app")
    service.kvstore.create("more", fields={"n": "number"})
    assert sorted(c.name for c in service.kvstore) == ["more", "things"]
    with pytest.raises(binding.HTTPError) as caught:
        service.kvstore.create("more")
    assert caught.value.status == 409
    with pytest.raises(KeyError):
        service.kvstore["absent"]


def test_collections_conf_of_the_app_declares_what_the_add_on_uses(splunkd):
    names = splunkd.load_collections_conf(f"{APP_DIR}/default/collections.conf")
    assert names  # parsed as splunkd would, one stanza per collection
    for name in names:
        assert splunkd.kv_documents(name) == []


def test_insert_get_update_delete_by_key(splunkd, things):
    assert things.insert({"_key": "a", "owner": "x", "rank": 1}) == {"_key": "a"}
    generated = things.insert({"owner": "y"})["_key"]
    assert len(generated) == 24 and int(generated, 16) >= 0
    assert things.query_by_id("a") == {"_key": "a", "_user": "nobody", "owner": "x", "rank": 1}
    assert things.update("a", {"rank": 2}) == {"_key": "a"}
    assert things.query_by_id("a") == {"_key": "a", "_user": "nobody", "rank": 2}  # replaced, not merged
    things.delete_by_id("a")
    with pytest.raises(binding.HTTPError) as caught:
        things.query_by_id("a")
    assert caught.value.status == 404
    with pytest.raises(binding.HTTPError) as caught:
        things.update("a", {"rank": 3})  # an update is no upsert
    assert caught.value.status == 404
    statuses = [(m, s) for m, _, s in splunkd.requests if "/storage/collections/data/" in _]
    assert statuses[:2] == [("POST", 201), ("POST", 201)]


def test_inserting_an_existing_key_is_409_and_changes_nothing(things):
    things.insert({"_key": "lease.1", "holder": "sh1"})
    with pytest.raises(binding.HTTPError) as caught:
        things.insert({"_key": "lease.1", "holder": "sh2"})
    assert caught.value.status == 409
    assert "already exists" in str(caught.value)
    assert things.query_by_id("lease.1")["holder"] == "sh1"


def test_query_operators_sort_skip_limit_fields(things):
    things.batch_save(
        *[{"_key": f"k{i}", "owner": "x" if i % 2 else "y", "rank": i, "name": f"n{i:02}"} for i in range(10)]
    )
    ranks = lambda rows: [r["rank"] for r in rows]  # noqa: E731
    assert ranks(things.query(query={"owner": "x"}, sort="rank")) == [1, 3, 5, 7, 9]
    assert ranks(things.query(query={"rank": {"$gte": 3, "$lt": 6}}, sort="rank:-1")) == [5, 4, 3]
    assert ranks(things.query(query={"$or": [{"rank": 0}, {"rank": {"$gt": 8}}]}, sort="rank")) == [0, 9]
    assert ranks(things.query(query={"$and": [{"owner": "y"}, {"rank": {"$ne": 4}}]}, sort="rank")) == [0, 2, 6, 8]
    assert ranks(things.query(query={"$not": {"owner": "y"}, "rank": {"$lte": 3}}, sort="rank")) == [1, 3]
    assert ranks(things.query(query={"name": {"$regex": "^n0[12]$"}}, sort="rank")) == [1, 2]
    assert ranks(things.query(sort="owner,rank:-1", skip=2, limit=3)) == [5, 3, 1]
    assert things.query(query={"_key": "k4"}, fields="rank") == [{"_key": "k4", "rank": 4}]
    assert things.query(query={"rank": {"$gt": "4"}}) == []  # no comparison across types


@pytest.mark.parametrize("operator", ["$in", "$exists", "$nin", "$elemMatch"])
def test_operators_splunk_does_not_document_are_refused(things, operator):
    things.insert({"_key": "a", "rank": 1})
    with pytest.raises(binding.HTTPError) as caught:
        things.query(query={"rank": {operator: [1]}})
    assert caught.value.status == 400
    with pytest.raises(binding.HTTPError):
        things.query(query={operator: [{"rank": 1}]})


def test_batch_save_upserts_and_answers_the_keys(splunkd, things):
    things.insert({"_key": "a", "v": 1})
    assert things.batch_save({"_key": "a", "v": 2}, {"_key": "b", "v": 3}) == ["a", "b"]
    assert [d["v"] for d in things.query(sort="_key")] == [2, 3]
    request = [r for r in splunkd.requests if r[1].endswith("/batch_save")]
    assert request == [("POST", f"{NS}/storage/collections/data/things/batch_save", 200)]


def test_batch_save_limit_is_1000_documents(splunkd, things):
    with pytest.raises(binding.HTTPError) as caught:
        things.batch_save(*[{"_key": str(i)} for i in range(1001)])
    assert caught.value.status == 400
    assert "max = 1000" in str(caught.value.body)
    assert splunkd.kv_documents("things") == []  # nothing saved
    assert len(things.batch_save(*[{"_key": str(i)} for i in range(1000)])) == 1000


def test_a_query_returns_at_most_max_rows_per_query(splunkd, things):
    splunkd.kv_limits.max_rows_per_query = 7  # 50 000 in Splunk: the same rule, smaller
    things.batch_save(*[{"_key": f"{i:02}"} for i in range(10)])
    assert len(things.query()) == 7
    assert len(things.query(limit=100)) == 7
    assert [d["_key"] for d in things.query(sort="_key", skip=7)] == ["07", "08", "09"]


def test_batch_find_answers_one_list_per_query(things):
    things.batch_save(*[{"_key": f"u{i}", "seq": i} for i in range(5)])
    found = things.batch_find(
        {"query": {"$or": [{"_key": "u1"}, {"_key": "u3"}, {"_key": "nope"}]}, "sort": "_key"},
        {"query": {"seq": {"$gt": 3}}, "fields": "seq"},
    )
    assert [[d["_key"] for d in rows] for rows in found] == [["u1", "u3"], ["u4"]]
    assert found[1] == [{"_key": "u4", "seq": 4}]


def test_delete_by_query_and_all(things):
    things.batch_save(*[{"_key": f"g{i}", "gen": i} for i in range(4)])
    things.delete(json.dumps({"gen": {"$lt": 2}}))
    assert [d["gen"] for d in things.query(sort="gen")] == [2, 3]
    things.delete()
    assert things.query() == []


def test_kv_store_starting_answers_503_and_server_info_says_so(splunkd, service, things):
    assert service.info["kvStoreStatus"] == "ready"
    splunkd.kvstore_status = "starting"
    with pytest.raises(binding.HTTPError) as caught:
        things.query()
    assert caught.value.status == 503
    assert "KV Store is initializing" in str(caught.value)
    assert service.info["kvStoreStatus"] == "starting"


def test_server_info_roles_and_instance_type(splunkd, service):
    info = service.info
    assert "shc_member" not in info["server_roles"] and "instance_type" not in info
    splunkd.server_roles = ["search_head", "shc_member", "kv_store"]
    splunkd.instance_type = "cloud"
    info = service.info
    assert info["server_roles"] == ["search_head", "shc_member", "kv_store"]  # a list, as splunklib parses it
    assert info["instance_type"] == "cloud"


def test_a_write_without_the_json_content_type_is_refused(service):
    with pytest.raises(binding.HTTPError) as caught:
        service.post("storage/collections/data/things", body=json.dumps({"_key": "a"}))
    assert caught.value.status == 400
