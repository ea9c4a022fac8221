"""tests/fakes/splunkd.py driven through splunklib 2.1.1, the way the add-on uses it.

These also pin down the exact requests splunklib sends for each call, so the
add-on's secrets code and its tests can rely on them.
"""

from __future__ import annotations

import json
import ssl
from urllib.parse import urlsplit

import pytest
import trustme
from splunklib import binding, client

from tests.fakes.splunkd import APP, KIND, MASK, FakeSplunkd, credential_name

SESSION_KEY = "test-session-key-0123456789"
REALM = "TA-auth0"
NS = f"/servicesNS/nobody/{APP}"


@pytest.fixture(scope="module")
def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def splunkd(server_context):
    with FakeSplunkd(server_context, session_key=SESSION_KEY) as fake:
        fake.add_input(
            "tenant_a",
            domain="example.us.auth0.com",
            client_id="cid",
            client_secret="s3cret",
            interval=300,
        )
        yield fake


def connect(splunkd: FakeSplunkd, token: str | None = SESSION_KEY, **namespace):
    """A Service built like the add-on builds it from splunkd's input XML."""
    uri = urlsplit(splunkd.server_uri)
    return client.Service(scheme=uri.scheme, host=uri.hostname, port=uri.port, token=token, **namespace)


@pytest.fixture
def service(splunkd):
    return connect(splunkd, owner="nobody", app=APP)


def test_listens_on_loopback_https_only(splunkd):
    assert splunkd.server_uri.startswith("https://127.0.0.1:")


def test_create_answers_201_with_the_entry(splunkd, service):
    created = service.storage_passwords.create("s3cret", "tenant_a", REALM)

    assert (created.name, created.realm, created.username) == (
        "TA-auth0:tenant_a:",
        REALM,
        "tenant_a",
    )
    assert created.clear_password == "s3cret"
    assert created.encrypted_password.startswith("$7$")
    assert created["password"] == MASK
    assert (created.access.app, created.access.sharing) == (APP, "app")
    assert splunkd.passwords == {(REALM, "tenant_a"): "s3cret"}
    # body: password=s3cret&realm=TA-auth0&name=tenant_a (no Content-Type)
    assert splunkd.requests == [("POST", f"{NS}/storage/passwords", 201)]


def test_list_iterate_and_get_by_name(splunkd, service):
    splunkd.add_password("one", "tenant_a", REALM)
    splunkd.add_password("two", "tenant_b", REALM)
    splunkd.add_password("other", "someone", "elsewhere")

    listed = {p.name: p.clear_password for p in service.storage_passwords}
    assert listed == {
        "TA-auth0:tenant_a:": "one",
        "TA-auth0:tenant_b:": "two",
        "elsewhere:someone:": "other",
    }
    assert [p.name for p in service.storage_passwords.list(search=f"realm={REALM}")] == [
        "TA-auth0:tenant_a:",
        "TA-auth0:tenant_b:",
    ]
    entity = service.storage_passwords["TA-auth0:tenant_b:"]
    assert (entity.clear_password, entity.username, entity.realm) == (
        "two",
        "tenant_b",
        REALM,
    )
    with pytest.raises(KeyError):
        service.storage_passwords["TA-auth0:nobody-here:"]

    assert [r[:2] for r in splunkd.requests] == [
        ("GET", f"{NS}/storage/passwords?count=-1&offset=0"),
        ("GET", f"{NS}/storage/passwords?count=-1&offset=0&search=realm%3DTA-auth0"),
        ("GET", f"{NS}/storage/passwords/TA-auth0%3Atenant_b%3A"),
        ("GET", f"{NS}/storage/passwords/TA-auth0%3Anobody-here%3A"),
    ]
    assert splunkd.requests[-1][2] == 404


def test_update_posts_the_new_password(splunkd, service):
    splunkd.add_password("old", "tenant_a", REALM)
    entity = service.storage_passwords["TA-auth0:tenant_a:"]

    entity.update(password="new")

    assert splunkd.passwords == {(REALM, "tenant_a"): "new"}
    assert entity.clear_password == "old"  # Entity.update does not refresh
    assert entity.refresh().clear_password == "new"
    assert splunkd.requests[1:] == [
        ("POST", f"{NS}/storage/passwords/TA-auth0%3Atenant_a%3A", 200),
        ("GET", f"{NS}/storage/passwords/TA-auth0%3Atenant_a%3A", 200),
    ]


def test_delete_by_name_and_by_entity(splunkd, service):
    splunkd.add_password("a", "tenant_a", REALM)
    splunkd.add_password("b", "tenant_b", REALM)

    service.storage_passwords.delete("tenant_a", REALM)
    service.storage_passwords["TA-auth0:tenant_b:"].delete()

    assert splunkd.passwords == {}
    with pytest.raises(KeyError):  # splunkd's 404, as splunklib reports it
        service.storage_passwords.delete("tenant_a", REALM)
    assert [r for r in splunkd.requests if r[0] == "DELETE"] == [
        ("DELETE", f"{NS}/storage/passwords/TA-auth0%3Atenant_a%3A", 200),
        ("DELETE", f"{NS}/storage/passwords/TA-auth0%3Atenant_b%3A", 200),
        ("DELETE", f"{NS}/storage/passwords/TA-auth0%3Atenant_a%3A", 404),
    ]


def test_creating_an_existing_credential_is_409(splunkd, service):
    service.storage_passwords.create("first", "tenant_a", REALM)

    with pytest.raises(binding.HTTPError) as caught:
        service.storage_passwords.create("second", "tenant_a", REALM)

    assert caught.value.status == 409
    assert "already exists" in str(caught.value)
    assert splunkd.passwords == {(REALM, "tenant_a"): "first"}


def test_colons_in_realm_and_username_are_escaped(splunkd, service):
    created = service.storage_passwords.create("pw", "user:x", "realm:y")
    name = credential_name("realm:y", "user:x")

    assert created.name == name == "realm\\:y:user\\:x:"
    found = service.storage_passwords[name]
    assert (found.realm, found.username) == ("realm:y", "user:x")
    found.update(password="pw2")
    assert splunkd.passwords == {("realm:y", "user:x"): "pw2"}
    found.delete()
    assert splunkd.passwords == {}
    assert splunkd.requests[-1] == (
        "DELETE",
        f"{NS}/storage/passwords/realm%5C%3Ay%3Auser%5C%3Ax%3A",
        200,
    )


def test_splunklib_quirks_with_slash_or_colon_in_names(splunkd, service):
    # An entity's path is the *unquoted* link from the feed, so a "/" in the
    # realm becomes a path separator: splunkd (and this fake) answer 404.
    entity = service.storage_passwords.create("pw", "tenant_a", "auth0_activity://a")
    with pytest.raises(binding.HTTPError) as caught:
        entity.delete()
    assert caught.value.status == 404
    # storage_passwords.delete(user, realm) does not escape ":" in either part.
    with pytest.raises(KeyError):
        service.storage_passwords.delete("tenant_a", "auth0_activity://a")
    # The full, escaped name goes through (quote_plus encodes the "/").
    service.storage_passwords.delete(credential_name("auth0_activity://a", "tenant_a"))
    assert splunkd.passwords == {}


def test_input_stanza_read_and_masked(splunkd, service):
    stanza = service.inputs["tenant_a", KIND]
    assert stanza.kind == KIND
    assert stanza.content["client_secret"] == "s3cret"
    assert stanza.content["interval"] == "300"

    stanza.update(client_secret=MASK)

    assert splunkd.input_params("tenant_a") == {
        "domain": "example.us.auth0.com",
        "client_id": "cid",
        "client_secret": MASK,
        "interval": "300",
    }
    assert stanza.refresh().content["client_secret"] == MASK
    path = f"{NS}/data/inputs/{KIND}/tenant_a"
    assert splunkd.requests == [("GET", path, 200), ("POST", path, 200), ("GET", path, 200)]


def test_input_stanza_by_name_only_and_by_raw_post(splunkd, service):
    # Without a kind splunklib first lists the kinds under data/inputs/.
    assert service.inputs["tenant_a"].content["domain"] == "example.us.auth0.com"
    service.post(f"data/inputs/{KIND}/tenant_a", client_secret=MASK)

    assert splunkd.input_params("tenant_a")["client_secret"] == MASK
    with pytest.raises(KeyError):
        service.inputs["nope", KIND]
    assert [r[:2] for r in splunkd.requests] == [
        ("GET", f"{NS}/data/inputs/"),
        ("GET", f"{NS}/data/inputs/{KIND}/tenant_a"),
        ("POST", f"{NS}/data/inputs/{KIND}/tenant_a"),
        ("GET", f"{NS}/data/inputs/{KIND}/nope"),
    ]


def test_validator_can_reject_an_input_update(server_context):
    def validator(name, params):
        return None if params.get("domain") else "domain is required"

    with FakeSplunkd(server_context, SESSION_KEY, validator=validator) as fake:
        fake.add_input("tenant_a", domain="d.example", client_secret="s")
        stanza = connect(fake, owner="nobody", app=APP).inputs["tenant_a", KIND]
        with pytest.raises(binding.HTTPError) as caught:
            stanza.update(domain="")
        assert caught.value.status == 400
        assert "domain is required" in str(caught.value)
        assert fake.input_params("tenant_a")["domain"] == "d.example"


@pytest.mark.parametrize("token", ["wrong-key", None])
def test_wrong_or_missing_session_key_is_401(splunkd, token):
    with pytest.raises(binding.AuthenticationError) as caught:
        connect(splunkd, token=token, owner="nobody", app=APP).storage_passwords.list()

    assert caught.value.status == 401
    assert b"call not properly authenticated" in caught.value.body
    assert splunkd.requests == [("GET", f"{NS}/storage/passwords?count=-1&offset=0", 401)]


def test_fail_next_injects_errors_on_any_route(splunkd, service):
    splunkd.fail_next(503, times=2)

    for _ in range(2):
        with pytest.raises(binding.HTTPError) as caught:
            service.inputs["tenant_a", KIND]
        assert caught.value.status == 503
    assert service.inputs["tenant_a", KIND].name == "tenant_a"
    assert [r[2] for r in splunkd.requests] == [503, 503, 200]


def test_output_mode_json(splunkd, service):
    splunkd.add_password("s3cret", "tenant_a", REALM)

    body = json.loads(service.get("storage/passwords", output_mode="json").body.read())

    assert body["paging"] == {"total": 1, "perPage": 30, "offset": 0}
    [entry] = body["entry"]
    assert entry["name"] == "TA-auth0:tenant_a:"
    assert entry["acl"]["sharing"] == "app"
    assert entry["content"]["clear_password"] == "s3cret"
    with pytest.raises(binding.HTTPError) as caught:
        service.get("storage/passwords/nope%3A", output_mode="json")
    assert json.loads(caught.value.body)["messages"][0]["type"] == "ERROR"


def test_default_page_is_30_entries(splunkd, service):
    for i in range(35):
        splunkd.add_password(f"pw{i}", f"user{i:02}", REALM)

    raw = service.get("storage/passwords").body.read().decode()

    assert raw.count("<entry>") == 30
    assert "<opensearch:totalResults>35</opensearch:totalResults>" in raw
    assert len(service.storage_passwords.list()) == 35  # splunklib asks count=-1


def test_a_service_without_namespace_stores_elsewhere(splunkd, service):
    # The script's own Service (no owner/app) posts to /services/storage/passwords:
    # splunkd files that credential under the user's default app, not TA-auth0.
    connect(splunkd).storage_passwords.create("s3cret", "tenant_a", REALM)

    assert splunkd.passwords == {}
    assert [(c["app"], c["sharing"]) for c in splunkd.all_credentials] == [("search", "user")]
    assert list(service.storage_passwords) == []
    assert splunkd.requests[0] == ("POST", "/services/storage/passwords", 201)
