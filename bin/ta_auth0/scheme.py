"""What splunkd asks about the input's form: `--scheme` and `--validate-arguments`.

Both go through splunklib's modular input `Script`, which speaks that part
of the protocol. Run mode does not (modinput.py): importing
`splunklib.modularinput` imports `splunklib.client` too, a cost an idle run
every interval would pay for nothing.
"""

from __future__ import annotations

import contextlib
import time
from typing import Mapping, Optional

from splunklib.modularinput import Argument, Scheme, Script

from . import user_agent
from .auth0_api import Auth0ApiError, Auth0Client, MemoryTokenCache
from .config import MASK, ConfigError, InputConfig, parse_config, proxy_password
from .credentials import CredentialError, CredentialStore, resolve_secrets
from .stores import cached_token, keep_token

# Saving the Data inputs form waits for validation: keep it short.
VALIDATION_BUDGET_SECONDS = 20.0

_ARGUMENTS = (
    ("domain", "Auth0 domain", "Tenant domain, e.g. example.us.auth0.com (no https://, no path).", True),
    (
        "client_id",
        "Client ID",
        "Client ID of a machine-to-machine application authorised for the Management API.",
        True,
    ),
    (
        "client_secret",
        "Client secret",
        "Its client secret. Stored in Splunk's credential store on first use; shown here as ********.",
        True,
    ),
    (
        "start_from",
        "Start from",
        "Where a new input starts: oldest (every log Auth0 still keeps), now, or a date/time such as "
        "2026-11-18T09:00:00Z. Default: oldest.",
        False,
    ),
    (
        "update_metadata",
        "Update the signed-up flag",
        "true: set app_metadata.<flag> = true on each user once their event is in Splunk (as the Auth0 rule "
        "did); false: only read it. Default: true.",
        False,
    ),
    ("metadata_flag", "Flag name", "The app_metadata key that marks a user as signed up. Default: signedUp.", False),
    (
        "collect",
        "Collect",
        "activity: successful signups and logins only (sourcetype auth0_activity); all: those, and every other "
        "Auth0 log as sourcetype auth0, in the shape of Auth0's Splunk log stream. Default: activity.",
        False,
    ),
    (
        "proxy_url",
        "Proxy URL",
        "Optional outbound proxy for every Auth0 call: http(s)://[user:password@]host:port.",
        False,
    ),
    ("log_level", "Log level", "DEBUG, INFO, WARNING or ERROR for ta_auth0.log. Default: INFO.", False),
    (
        "state_store",
        "State store",
        "Where the input keeps its checkpoint: auto (the KV store on a search head cluster member or Splunk "
        "Cloud, else local), local (a file in the checkpoint directory) or kvstore. Default: auto.",
        False,
    ),
)


class Auth0ActivityInput(Script):
    """The `auth0_activity` modular input, for `--scheme` and `--validate-arguments`."""

    def get_scheme(self) -> Scheme:
        scheme = Scheme("Auth0 activity")
        scheme.description = (
            "Auth0 signups and logins (sourcetype auth0_activity), and on request every other Auth0 log "
            "(sourcetype auth0), read from the tenant's logs through the Management API; keeps each user's "
            "app_metadata signed-up flag in step."
        )
        scheme.use_external_validation = True
        scheme.use_single_instance = False
        scheme.streaming_mode = Scheme.streaming_mode_xml
        for name, title, description, required in _ARGUMENTS:
            argument = Argument(name, title=title, description=description)
            argument.data_type = Argument.data_type_boolean if name == "update_metadata" else Argument.data_type_string
            argument.required_on_create = required
            argument.required_on_edit = False
            scheme.add_argument(argument)
        return scheme

    def validate_input(self, definition) -> None:
        validate(definition.metadata.get("name") or "", definition.parameters, definition.metadata)

    def stream_events(self, inputs, ew) -> None:  # pragma: no cover - run mode is modinput.run
        raise NotImplementedError("run mode is handled by ta_auth0.modinput.run")


def validate(name: str, params: Mapping[str, object], metadata: Mapping[str, Optional[str]]) -> None:
    """--validate-arguments: check the values, then try them against Auth0
    (a token, its scopes, a one-log read). Raises with a message a person
    can act on; the secret never appears in it."""
    secrets = [str(params.get("client_secret") or ""), proxy_password(str(params.get("proxy_url") or ""))]
    try:
        config = parse_config(name, params)
        typed = not (config.secret_is_masked or MASK in (config.proxy_url or ""))
        cached = None
        if not typed:
            # A later edit: the form shows the mask, the store has the secret.
            config, _ = resolve_secrets(config, _store(metadata), move=False)
            secrets += [config.client_secret, proxy_password(config.proxy_url)]
            # With the runs' token still valid, Auth0 already accepted these
            # credentials: check its scopes, spend no token (SPEC §7) nor call.
            cached = cached_token(config, metadata)
        api = Auth0Client(
            domain=config.domain,
            client_id=config.client_id,
            secret=lambda: config.client_secret,
            token_cache=cached or MemoryTokenCache(),
            deadline=time.monotonic() + VALIDATION_BUDGET_SECONDS,
            proxy_url=config.proxy_url,
            user_agent=user_agent(),
            retries=0,
        )
        try:
            check_scopes(config, api.granted_scopes())
            if cached is None:
                api.newest_log()
        finally:
            api.close()
        if cached is None:
            # The token Auth0 just issued serves the input's runs too: one
            # token per lifetime, even counting the form's validation (SPEC §7).
            keep_token(config, metadata, api.token())
        if typed:
            # Auth0 accepted it: store the secret now (SPEC §6); the first run
            # masks the stanza. Best effort: that run stores it too, and logs
            # if it cannot.
            with contextlib.suppress(CredentialError):
                resolve_secrets(config, _store(metadata))
    except (ConfigError, CredentialError, Auth0ApiError, ValueError) as exc:
        raise ValueError(_redact(str(exc), secrets)) from None


def check_scopes(config: InputConfig, granted: Optional[set]) -> None:
    """The scopes these settings need, against those Auth0 granted (when it said).

    Any one of an endpoint's scopes grants it (SPEC §3); a refusal names the
    narrowest that would do."""
    missing = config.missing_scopes(granted) if granted is not None else []
    if missing:
        many = len(missing) > 1
        raise ValueError(
            f"the application {config.client_id} lacks the {', '.join(missing)} scope{'s' if many else ''} on "
            f"{config.domain}: add {'them' if many else 'it'} under Applications > APIs > Auth0 Management API > "
            "Machine to Machine Applications"
        )


def _store(metadata: Mapping[str, Optional[str]]) -> CredentialStore:
    return CredentialStore(metadata.get("server_uri") or "", metadata.get("session_key") or "")


def _redact(text: str, secrets) -> str:
    for secret in sorted((s for s in secrets if s and s != MASK), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
