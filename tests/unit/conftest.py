"""The fake splunkd the unit tests of the Splunk side talk to."""

from __future__ import annotations

import contextlib
import ssl

import pytest

from tests.addon import COLLECTIONS_CONF
from tests.fakes.splunkd import FakeSplunkd


@pytest.fixture(scope="session")
def server_context(ca) -> ssl.SSLContext:
    """TLS for a fake splunkd: the suite's throwaway CA (splunklib does not verify it)."""
    return ca.server_ssl_context()


@pytest.fixture
def start_splunkd(server_context):
    """Starts fake splunkds that know the app's KV store collections, as
    splunkd does once the app is installed; each is stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(session_key: str, kind: type = FakeSplunkd) -> FakeSplunkd:
            fake = stack.enter_context(kind(server_context, session_key=session_key))
            fake.load_collections_conf(COLLECTIONS_CONF)
            return fake

        yield start
