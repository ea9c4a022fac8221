"""Secrets in Splunk's credential store (storage/passwords), masked in inputs.conf.

Splunk's modular input scheme has no password type, so the client secret
arrives as a plain parameter. The first run (or a run after the admin typed
a new secret) stores it encrypted in storage/passwords and writes `********`
back into the input's stanza; later runs find the mask and read the store.
The same goes for a password inside `proxy_url`.

Credentials live in the app's namespace (owner nobody, app TA-auth0), realm
`TA-auth0`, user name = the input's name (`<name>#proxy` for the proxy).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional
from urllib.parse import quote, urlsplit

from . import APP_NAME
from .config import MASK, InputConfig

REALM = APP_NAME
INPUT_PATH = "data/inputs/auth0_activity/"


class CredentialError(RuntimeError):
    """The credential store could not give or take a secret."""


class CredentialStore:
    """storage/passwords and the input's stanza, through splunklib."""

    def __init__(self, server_uri: str, session_key: str) -> None:
        # Imported here: splunklib.client is the heaviest import of the add-on,
        # and a run that needs no secret from the store never needs it.
        from splunklib import binding

        from .splunkrest import service

        self._http_error = binding.HTTPError
        if not urlsplit(server_uri or "").hostname or not session_key:
            raise CredentialError("splunkd did not pass server_uri and session_key: cannot reach the credential store")
        # A namespaced service: the SDK's default one (owner/app unset) cannot
        # create credentials in the app.
        self.service = service(server_uri, session_key)

    def get(self, user: str) -> Optional[str]:
        try:
            return self.service.storage_passwords[_entry_name(user)].clear_password
        except KeyError:
            return None
        except (self._http_error, OSError) as exc:
            raise CredentialError(f"cannot read the credential store: {_http_reason(exc)}") from None

    def put(self, user: str, secret: str) -> None:
        """Create the credential, or replace its password if it exists."""
        try:
            try:
                entry = self.service.storage_passwords[_entry_name(user)]
            except KeyError:
                self.service.storage_passwords.create(secret, user, REALM)
            else:
                entry.update(password=secret)
        except (self._http_error, OSError, ValueError) as exc:
            raise CredentialError(f"cannot write the credential store: {_http_reason(exc)}") from None

    def mask_input(self, input_name: str, **masked: str) -> None:
        """Write the masked values into the input's stanza (splunkd then
        restarts the input; the new process reads the store)."""
        from splunklib.binding import UrlEncoded

        # Encoded here, name and all: splunklib would encode a plain str path
        # again (a name with a space or a slash would then not be found).
        path = UrlEncoded(INPUT_PATH + quote(input_name, safe=""), skip_encode=True)
        try:
            self.service.post(path, **masked)
        except (self._http_error, OSError) as exc:
            raise CredentialError(f"cannot mask the secret in the input's settings: {_http_reason(exc)}") from None


def resolve_secrets(
    config: InputConfig, store: CredentialStore, move: bool = True
) -> tuple[InputConfig, dict[str, str]]:
    """The config with real secrets in it, and, for each typed secret now
    stored (`move`), the masked value its stanza field should get. Masking
    is the caller's last step (`mask_input`): splunkd restarts an input whose
    stanza changes. Raises CredentialError."""
    moved: dict[str, str] = {}
    secret = config.client_secret
    if secret == MASK:
        secret = stored_client_secret(store, config.name)
    elif move:
        store.put(_user(config.name), secret)
        moved["client_secret"] = MASK

    proxy_url = config.proxy_url
    proxy = urlsplit(proxy_url) if proxy_url else None
    if proxy is not None and proxy.password:
        if proxy.password == MASK:
            proxy_url = stored_proxy_url(store, config)
        elif move:
            store.put(_user(config.name) + "#proxy", proxy.password)
            moved["proxy_url"] = _with_password(proxy, MASK)

    return dataclasses.replace(config, client_secret=secret, proxy_url=proxy_url), moved


def stored_client_secret(store: CredentialStore, input_name: str) -> str:
    """The client secret kept for this input; CredentialError if there is none."""
    secret = store.get(_user(input_name))
    if secret is None:
        raise CredentialError(
            f"the client secret of input {input_name} is masked but missing from Splunk's credential store: "
            "edit the input and type the client secret again"
        )
    return secret


def stored_proxy_url(store: CredentialStore, config: InputConfig) -> Optional[str]:
    """The proxy URL with its masked password replaced by the stored one."""
    proxy = urlsplit(config.proxy_url) if config.proxy_url else None
    if proxy is None or proxy.password != MASK:
        return config.proxy_url
    password = store.get(_user(config.name) + "#proxy")
    if password is None:
        raise CredentialError(
            f"the proxy password of input {config.name} is masked but missing from Splunk's credential "
            "store: edit the input and type the proxy URL again"
        )
    return _with_password(proxy, password)


def _with_password(parts, password: str) -> str:
    netloc = f"{parts.username or ''}:{password}@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def _user(name: str) -> str:
    """The credential's user name for an input. splunklib 2.1.1 mishandles
    ':' and '/' in credential names (entity paths come back unquoted), so
    they are replaced."""
    return re.sub(r"[:/\\]", "_", name)


def _entry_name(user: str) -> str:
    """storage/passwords names are `realm:user:`."""
    return f"{REALM}:{user}:"


def _http_reason(exc: Exception) -> str:
    """`503 Service Unavailable -- <splunkd's own message>` (splunklib's
    HTTPError carries splunkd's <msg>, e.g. why a validation refused an edit)."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or str(exc)
    if not status:
        return str(reason)
    detail = str(exc).partition(" -- ")[2]
    return f"{status} {reason}" + (f" -- {detail[:300]}" if detail else "")
