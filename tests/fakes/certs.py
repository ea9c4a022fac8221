"""A throwaway certificate authority for the fake Auth0 tenant.

The add-on always verifies certificates (SPEC §3), so tests cannot use a
self-signed server certificate with ``verify=False``. Instead each test run
makes its own CA with ``trustme``, gives the server a certificate for
``127.0.0.1`` and ``localhost`` signed by it, and points the add-on at the CA
through ``REQUESTS_CA_BUNDLE``.

Everything is written under the directory the caller passes (a tmp dir):
never into the repository, and the private keys are mode 0600.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Union

import trustme

SERVER_IDENTITIES = ("127.0.0.1", "localhost")


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(str(path), mode)


class TestCA:
    """A CA and one server certificate, as PEM files in ``directory``."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Union[str, os.PathLike[str]]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="TA-auth0 tests (throwaway)")
        leaf = self._ca.issue_cert(*SERVER_IDENTITIES)

        self.ca_bundle_path = str(self.directory / "fake-auth0-ca.pem")
        self.server_cert_path = str(self.directory / "fake-auth0-server.pem")
        self.server_key_path = str(self.directory / "fake-auth0-server.key")

        _write(Path(self.ca_bundle_path), self._ca.cert_pem.bytes())
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        _write(Path(self.server_cert_path), chain)
        _write(Path(self.server_key_path), leaf.private_key_pem.bytes(), 0o600)

    def server_ssl_context(self) -> ssl.SSLContext:
        """An SSLContext for a server presenting the 127.0.0.1/localhost cert."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert_path, self.server_key_path)
        return context

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSLContext for a client that trusts only this CA."""
        return ssl.create_default_context(cafile=self.ca_bundle_path)


def make_test_ca(directory: Union[str, os.PathLike[str]]) -> TestCA:
    """Create a fresh CA + server certificate under ``directory``."""
    return TestCA(directory)
