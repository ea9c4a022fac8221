"""The Splunk side: scheme, argument validation, and one run per process.

splunkd starts `bin/auth0_activity.py` with `--scheme` (to build the Data
inputs form), with `--validate-arguments` (when an admin saves the form) and
with no argument to run an input, sending XML on stdin each time.
splunklib's Script handles the protocol; this module wires a run together.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Mapping, Optional

from splunklib.modularinput import Argument, EventWriter, Scheme, Script

from . import app_version
from .auth0_api import MAX_RETRIES, Auth0ApiError, Auth0Client, MemoryTokenCache, RateLimited
from .collector import RUN_BUDGET_SECONDS, Collector, RunStats
from .config import MASK, ConfigError, InputConfig, input_name, parse_config, proxy_password
from .credentials import CredentialError, CredentialStore, resolve_secrets
from .lease import LeaseHeld
from .runlog import RunLog
from .state import StateBackend, StateError
from .stores import cached_token, open_state

# A run that falls this far behind (with more logs still waiting) is warned
# about: Auth0 keeps logs 1 day (free plan) to 30 days, then they are gone.
LAG_WARNING_SECONDS = 12 * 3600
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
    """The `auth0_activity` modular input."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def get_scheme(self) -> Scheme:
        scheme = Scheme("Auth0 activity")
        scheme.description = (
            "Successful Auth0 signups and logins (sourcetype auth0_activity), read from the tenant's logs "
            "through the Management API; keeps each user's app_metadata signed-up flag in step."
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

    def stream_events(self, inputs, ew: EventWriter) -> None:
        # splunkd sends one stanza per process (use_single_instance = false).
        for stanza, params in inputs.inputs.items():
            if not run_input(stanza, params, inputs.metadata, ew):
                self.failed = True


def run_input(stanza: str, params: Mapping[str, object], metadata: Mapping[str, Optional[str]], writer) -> bool:
    """Run one input once; log what happened; True when the run succeeded."""
    runlog = RunLog(input_name(stanza), sys.stderr, os.environ.get("SPLUNK_HOME"))
    log = runlog.logger
    started = time.monotonic()
    stats, api, status = RunStats(), None, "error"
    try:
        runlog.hide([str(params.get("client_secret") or ""), proxy_password(str(params.get("proxy_url") or ""))])
        config = parse_config(stanza, params)
        runlog.set_level(config.log_level)
        runlog.set_domain(config.domain)
        ran_before = config.secret_is_masked  # masked by an earlier run (or edit): it has run before
        config, masked = _with_secrets(config, metadata, log)
        runlog.hide([config.client_secret, proxy_password(config.proxy_url)])
        with open_state(config, metadata, log) as opened:
            state = opened.state
            api = _client(config, started + RUN_BUDGET_SECONDS, token_cache=opened.token_cache)
            collector = Collector(
                config, state, api, writer, stanza, started + RUN_BUDGET_SECONDS, opened.heartbeat, ran_before
            )
            try:
                stats = collector.run()
                status = "ok"
            except RateLimited as exc:
                stats = collector.stats
                status = "incomplete"
                log.warning("run stopped early at log_id %s: %s", stats.last_log_id, exc)
            except Auth0ApiError as exc:
                stats = collector.stats
                log.error("run failed at log_id %s: %s", stats.last_log_id or state_checkpoint(state) or "-", exc)
            finally:
                stats.flag_writes_pending = state.pending_count()
                api.close()
        _mask_stanza(config.name, masked, metadata, log)
    except LeaseHeld as exc:  # another search head collects: one INFO line, nothing written
        log.info("%s", exc)
        runlog.close()
        return True
    except ConfigError as exc:
        log.error("input %s is misconfigured, nothing collected: %s", input_name(stanza), exc)
    except CredentialError as exc:
        log.error("input %s: %s", input_name(stanza), exc)
    except StateError as exc:
        log.error("%s", exc)
    except Exception as exc:
        log.exception("run failed unexpectedly: %s: %s", type(exc).__name__, exc)
    _summary(log, status, stats, api, time.monotonic() - started, params.get("interval"))
    runlog.close()
    return status != "error"


def _with_secrets(config: InputConfig, metadata: Mapping[str, Optional[str]], log) -> tuple[InputConfig, dict]:
    """Real secrets for this run; a typed secret moves to storage/passwords
    (the stanza is masked at the end of the run, see _mask_stanza).

    If the store cannot take a newly typed secret, the run still collects
    with it (the admin gave it) and says so, every run, until it works."""
    try:
        return resolve_secrets(config, _store(metadata))
    except CredentialError as exc:
        if config.secret_is_masked or MASK in (config.proxy_url or ""):
            raise
        log.error("%s; the secret stays in plain text in inputs.conf until this works", exc)
        return config, {}


def _mask_stanza(name: str, masked: Mapping[str, str], metadata: Mapping[str, Optional[str]], log) -> None:
    """Mask newly stored secrets in the input's stanza. Last in the run:
    splunkd restarts an input whose stanza changes."""
    if not masked:
        return
    try:
        _store(metadata).mask_input(name, **masked)
    except CredentialError as exc:
        log.error("%s; the secret stays in plain text in inputs.conf until this works", exc)
        return
    log.info("moved %s into Splunk's credential store and masked it in the input's settings", ", ".join(sorted(masked)))


def _client(config: InputConfig, deadline: float, token_cache=None, retries: int = MAX_RETRIES) -> Auth0Client:
    return Auth0Client(
        domain=config.domain,
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_cache=token_cache if token_cache is not None else MemoryTokenCache(),
        deadline=deadline,
        proxy_url=config.proxy_url,
        user_agent=f"TA-auth0/{app_version()}",
        retries=retries,
    )


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
        api = _client(config, time.monotonic() + VALIDATION_BUDGET_SECONDS, token_cache=cached, retries=0)
        try:
            _check_scopes(config, api.granted_scopes())
            if cached is None:
                api.first_log(newest=True)
        finally:
            api.close()
        if typed:
            # Auth0 accepted it: store the secret now (SPEC §6); the first run
            # masks the stanza. Best effort: that run stores it too, and logs
            # if it cannot.
            with contextlib.suppress(CredentialError):
                resolve_secrets(config, _store(metadata))
    except (ConfigError, CredentialError, Auth0ApiError, ValueError) as exc:
        raise ValueError(_redact(str(exc), secrets)) from None


def _store(metadata: Mapping[str, Optional[str]]) -> CredentialStore:
    return CredentialStore(metadata.get("server_uri") or "", metadata.get("session_key") or "")


def _check_scopes(config: InputConfig, granted: Optional[set]) -> None:
    """The scopes these settings need, against those Auth0 granted (when it said)."""
    missing = [scope for scope in config.required_scopes if granted is not None and scope not in granted]
    if missing:
        many = len(missing) > 1
        raise ValueError(
            f"the application {config.client_id} lacks the {', '.join(missing)} scope{'s' if many else ''} on "
            f"{config.domain}: add {'them' if many else 'it'} under Applications > APIs > Auth0 Management API > "
            "Machine to Machine Applications"
        )


def _redact(text: str, secrets) -> str:
    for secret in sorted((s for s in secrets if s and s != MASK), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def state_checkpoint(state: StateBackend) -> Optional[str]:
    checkpoint = state.checkpoint()
    return checkpoint.log_id if checkpoint else None


def _summary(log, status: str, stats: RunStats, api: Optional[Auth0Client], duration: float, interval) -> None:
    """The one line per run SPEC §7 asks for, key=value for Splunk's extraction."""
    lag = stats.lag_seconds(time.time())
    api_stats = api.stats if api else None
    fields = {
        "status": status,
        "logs_read": stats.logs_read,
        "events_written": stats.events_written,
        "signups": stats.signups,
        "logins": stats.logins,
        "flag_writes_done": stats.flag_writes_done,
        "flag_writes_pending": stats.flag_writes_pending,
        "flag_writes_skipped": stats.flag_writes_skipped,
        "api_calls": api_stats.calls if api_stats else 0,
        "rate_limited": api_stats.rate_limited if api_stats else 0,
        "tokens_requested": api_stats.tokens_requested if api_stats else 0,
        "duration_s": f"{duration:.1f}",
        "last_log_id": stats.last_log_id or "-",
        "lag_s": "-" if lag is None else f"{lag:.0f}",
        "caught_up": str(stats.caught_up).lower(),
        # seconds, or "-" for a cron schedule: lets an alert tell a stalled input
        "interval_s": str(interval).strip() if str(interval or "").strip().isdigit() else "-",
    }
    line = "run summary: " + " ".join(f"{key}={value}" for key, value in fields.items())
    log.log(40 if status == "error" else 30 if status == "incomplete" else 20, line)
    if lag is not None and not stats.caught_up and lag > LAG_WARNING_SECONDS:
        log.warning(
            "the input is %.1f hours behind the tenant's newest logs; Auth0 keeps logs for 1 to 30 days by plan "
            "and older ones are lost for good: check the rate limits and the interval",
            lag / 3600,
        )


def main(argv: Optional[list] = None) -> int:
    script = Auth0ActivityInput()
    code = script.run(argv if argv is not None else sys.argv)
    return code or (1 if script.failed else 0)
