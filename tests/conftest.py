"""Shared test set-up: import paths, the test CA, the fakes, the add-on runner.

The add-on under test is the app folder named by ADDON_APP_DIR (default: this
repository) run by the interpreter named by ADDON_PYTHON (default: the one
running the tests). See tests/addon.py.
"""

import json
import os
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from tests.addon import APP_DIR, COLLECTIONS_CONF, REPO

# Unit tests import the add-on's package and its vendored libraries directly.
for _path in (os.path.join(APP_DIR, "lib"), os.path.join(APP_DIR, "bin"), REPO):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from tests.addon import Result, addon_env, input_xml, run_input, run_script, validation_xml  # noqa: E402
from tests.fakes.certs import make_test_ca  # noqa: E402
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, load_seed  # noqa: E402
from tests.fakes.splunkd import FakeSplunkd  # noqa: E402
from tests.fakes.tenant import FakeTenant  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_stores: run the test with state_store = auto (local here) and with state_store = kvstore"
    )
    config.addinivalue_line(
        "markers",
        "subprocess: needs the add-on in a process of its own (killed, a closed pipe, a fresh interpreter); "
        "left out when the add-on runs in the test process (TA_AUTH0_IN_PROCESS, make mutants)",
    )
    config.addinivalue_line(
        "markers", "slow: waits a second or more on back-off or a rate limit; make mutants runs it in its last pass"
    )


def pytest_collection_modifyitems(config, items):
    """Under make mutants, fastest tests first: mutmut hands a mutant's tests
    over in no particular order and stops at the first failure, so a mutant
    then dies at its cheapest failing test (durations from mutmut's own
    stats run, in the directory it runs the tests from)."""
    stats = "mutmut-stats.json"
    if os.environ.get("MUTANT_UNDER_TEST") and os.path.exists(stats):
        with open(stats, encoding="utf-8") as handle:
            durations = json.load(handle).get("duration_by_test", {})
        items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("state_store", ["local", "kvstore"], indirect=True)


@pytest.fixture
def state_store(request):
    """The state_store the Bed's inputs get: "local" leaves the default (auto,
    which a standalone fake splunkd resolves to the local file)."""
    return getattr(request, "param", "local")


@pytest.fixture
def local_time_zone_new_york():
    """The machine's local time zone is not UTC (a Splunk server in New York)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


class Bed:
    """A seeded local Auth0 tenant, a fake splunkd, and the add-on between them.

    `configure(name, **params)` writes an input stanza into the fake splunkd;
    `run(name)` sends the add-on what splunkd would (the stanza as it is now,
    so a masked secret stays masked) and returns the parsed Result.
    """

    def __init__(
        self, tenant, seed, splunkd, root: str, ca, state_store: str = "local", server_host: str = "splunk-test"
    ) -> None:
        self.tenant = tenant
        self.seed = seed
        self.splunkd = splunkd
        self.root = root
        self.checkpoint_dir = os.path.join(root, "modinputs", "auth0_activity")
        self.splunk_home = os.path.join(root, "splunk")
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        self.ca = ca
        self.env = addon_env(ca.ca_bundle_path, self.splunk_home)
        self.state_store = state_store
        self.server_host = server_host
        # splunkd knows the app's KV store collections from its collections.conf.
        splunkd.load_collections_conf(COLLECTIONS_CONF)
        # splunkd validates an input's stanza externally on every create or
        # edit over REST (the masking write of a first run too), by running
        # the script with --validate-arguments.
        splunkd.validator = self.validate_stanza

    def member(self, name: str) -> "Bed":
        """Another search head of the same cluster: its own SPLUNK_HOME and
        checkpoint_dir, the same splunkd REST API (and KV store) and tenant."""
        root = os.path.join(self.root, name)
        other = Bed(self.tenant, self.seed, self.splunkd, root, self.ca, self.state_store, name)
        self.splunkd.validator = self.validate_stanza  # one validator, as before
        return other

    @property
    def log_file(self) -> str:
        return os.path.join(self.splunk_home, "var", "log", "splunk", "ta_auth0.log")

    def base_params(self, **overrides) -> dict:
        params = {
            "domain": self.tenant.domain,
            "client_id": MAIN_CLIENT_ID,
            "client_secret": MAIN_CLIENT_SECRET,
            # What splunkd adds to every stanza it sends.
            "interval": "300",
            "index": "auth0",
            "host": "splunk-test",
            "disabled": "0",
            "python.version": "python3",
        }
        if self.state_store != "local":
            params["state_store"] = self.state_store
        params.update(overrides)
        return {key: value for key, value in params.items() if value is not None}

    def configure(self, name: str = "prod", **overrides) -> dict:
        params = self.base_params(**overrides)
        self.splunkd.add_input(name, **params)
        return params

    def run(self, name: str = "prod", timeout: float = 120, **overrides) -> Result:
        if overrides or not self._has_input(name):
            self.configure(name, **overrides)
        params = self.splunkd.input_params(name)
        return run_input(
            f"auth0_activity://{name}",
            params,
            self.checkpoint_dir,
            self.env,
            server_uri=self.splunkd.server_uri,
            session_key=self.splunkd.session_key,
            timeout=timeout,
            server_host=self.server_host,
        )

    def validate_stanza(self, name: str, params: dict) -> "str | None":
        """What splunkd does with an input POST: run --validate-arguments
        with the stanza as it would become; the script's message rejects it."""
        document = validation_xml(name, params, self.splunkd.server_uri, self.splunkd.session_key, self.checkpoint_dir)
        done = run_script(["--validate-arguments"], document, self.env)
        if done.returncode == 0:
            return None
        try:
            return ET.fromstring(done.stdout.decode()).findtext("message") or "validation failed"
        except ET.ParseError:
            return "validation failed: " + done.stderr.decode("utf-8", "replace")[-500:]

    def input_document(self, name: str = "prod") -> str:
        """The <input> document splunkd would send for this stanza as it is now."""
        return input_xml(
            f"auth0_activity://{name}",
            self.splunkd.input_params(name),
            self.checkpoint_dir,
            self.splunkd.server_uri,
            self.splunkd.session_key,
        )

    def validate(self, name: str = "prod", **overrides):
        params = self.base_params(**overrides)
        document = validation_xml(name, params, self.splunkd.server_uri, self.splunkd.session_key, self.checkpoint_dir)
        return run_script(["--validate-arguments"], document, self.env)

    def _has_input(self, name: str) -> bool:
        try:
            self.splunkd.input_params(name)
        except KeyError:
            return False
        return True


@pytest.fixture
def bed(ca, tmp_path, state_store):
    with FakeTenant(ca=ca) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
        seed = load_seed(tenant)
        yield Bed(tenant, seed, splunkd, str(tmp_path), ca, state_store)


@pytest.fixture
def empty_bed(ca, tmp_path, state_store):
    """A tenant with the test applications and no users or logs."""
    from tests.fakes.seed import add_test_clients

    with FakeTenant(ca=ca) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
        add_test_clients(tenant)
        yield Bed(tenant, None, splunkd, str(tmp_path), ca, state_store)


@pytest.fixture(scope="session")
def seeded_run_events(ca, tmp_path_factory):
    """The events of one real run over the seeded tenant: each the event's
    JSON data, with its stream metadata under "_meta"."""
    root = str(tmp_path_factory.mktemp("seeded-run"))
    with FakeTenant(ca=ca) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
        seed = load_seed(tenant)
        result = Bed(tenant, seed, splunkd, root, ca).run()
    assert result.returncode == 0, result.stderr
    assert result.events, result.stderr
    events = []
    for event in result.events:
        data = dict(event.data)
        data["_meta"] = {
            "source": event.source,
            "sourcetype": event.sourcetype,
            "host": event.host,
            "index": event.index,
            "time": event.time,
        }
        events.append(data)
    return events
