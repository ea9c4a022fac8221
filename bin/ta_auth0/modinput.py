"""The Splunk side of a run: splunkd's XML in, one run per stanza, the summary line.

splunkd starts `bin/auth0_activity.py` with `--scheme` (to build the Data
inputs form), with `--validate-arguments` (when an admin saves the form) and
with no argument to run an input, sending XML on stdin each time. The first
two go through splunklib's Script (scheme.py). Run mode is handled here: it
is what splunkd starts every interval, and most runs find nothing new, so it
imports only what a run needs (not splunklib.client, not pyjwt, not the
credential store unless a secret must be read): see README "Development".
"""

from __future__ import annotations

import logging
import os
import sys
import time
import xml.etree.ElementTree as ET
from typing import BinaryIO, Dict, Mapping, Optional, TextIO, Tuple

from . import user_agent
from .config import COLLECT_ALL, MASK, ConfigError, InputConfig, input_name, parse_config, proxy_password
from .runlog import RunLog
from .state import StateError

# A run that falls this far behind (with more logs still waiting) is warned
# about: Auth0 keeps logs 1 day (free plan) to 30 days, then they are gone.
LAG_WARNING_SECONDS = 12 * 3600

Metadata = Dict[str, Optional[str]]


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) == 1:
        return run(sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    from .scheme import Auth0ActivityInput

    return Auth0ActivityInput().run(argv)


def run(stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    """Run mode: every stanza splunkd sent (one per process, as the scheme
    asks), events on stdout; 0 when every run succeeded."""
    from .stream import EventStream

    try:
        metadata, stanzas = parse_input_definition(stdin.read())
    except (ET.ParseError, ValueError) as exc:
        stderr.write(f"ERROR cannot read the input definition splunkd sent on stdin: {exc}\n")
        return 1
    stream = EventStream(stdout)
    failed = False
    for stanza, params in stanzas.items():
        if not run_input(stanza, params, metadata, stream, stderr):
            failed = True
    try:
        stream.close()
    except OSError:  # splunkd went away; the run's own error says so
        return 1
    return 1 if failed else 0


def parse_input_definition(document: bytes) -> Tuple[Metadata, Dict[str, Dict[str, object]]]:
    """splunkd's `<input>` document: its metadata and each stanza's parameters.

    The same reading as splunklib's InputDefinition.parse (tests compare the
    two): `<param>` gives a string, `<param_list>` a list of its `<value>`s,
    and `__app` the stanza's app."""
    root = ET.fromstring(document)
    if root.tag != "input":
        raise ValueError(f"expected <input>, got <{root.tag}>")
    metadata: Metadata = {}
    stanzas: Dict[str, Dict[str, object]] = {}
    for node in root:
        if node.tag == "configuration":
            for stanza in node:
                if stanza.tag != "stanza":
                    continue
                params: Dict[str, object] = {"__app": stanza.get("app")}
                for param in stanza:
                    if param.tag == "param":
                        params[param.get("name") or ""] = param.text
                    elif param.tag == "param_list":
                        params[param.get("name") or ""] = [value.text for value in param]
                    else:
                        raise ValueError(f"unexpected <{param.tag}> in stanza {stanza.get('name')!r}")
                stanzas[stanza.get("name") or ""] = params
        else:
            metadata[node.tag] = node.text
    return metadata, stanzas


def run_input(stanza: str, params: Mapping[str, object], metadata: Metadata, stream, stderr: TextIO) -> bool:
    """Run one input once; log what happened (on stderr, which splunkd copies
    to splunkd.log, and in ta_auth0.log); True when the run succeeded."""
    from .auth0_api import MAX_RETRIES, Auth0ApiError, Auth0Client, RateLimited
    from .collector import RUN_BUDGET_SECONDS, SOURCE, Collector, RunStats
    from .credentials import CredentialError
    from .lease import LeaseHeld
    from .stores import open_state
    from .stream import StreamClosed

    runlog = RunLog(input_name(stanza), stderr, os.environ.get("SPLUNK_HOME"))
    log = runlog.logger
    started = time.monotonic()
    deadline = started + RUN_BUDGET_SECONDS
    stats, api, status = RunStats(), None, "error"
    try:
        runlog.hide([str(params.get("client_secret") or ""), proxy_password(str(params.get("proxy_url") or ""))])
        config = parse_config(stanza, params)
        runlog.set_level(config.log_level)
        runlog.set_domain(config.domain)
        ran_before = config.secret_is_masked  # masked by an earlier run (or edit): it has run before
        secrets = _Secrets(config, metadata, runlog)
        config = secrets.prepare()
        with open_state(config, metadata, log) as opened:
            state = opened.state
            api = Auth0Client(
                domain=config.domain,
                client_id=config.client_id,
                secret=secrets.client_secret,
                token_cache=opened.token_cache,
                deadline=deadline,
                proxy_url=config.proxy_url,
                user_agent=user_agent(),
                retries=MAX_RETRIES,
                keep_raw=config.collect == COLLECT_ALL,
            )
            events = stream.writer(stanza, SOURCE, config.domain, config.index)
            collector = Collector(config, state, api, events, deadline, opened.heartbeat, ran_before)
            try:
                stats = collector.run()
                status = "ok"
            except RateLimited as exc:
                stats = collector.stats
                status = "incomplete"
                log.warning("run stopped early at log_id %s: %s", stats.last_log_id or _checkpoint_of(state), exc)
            except Auth0ApiError as exc:
                stats = collector.stats
                log.error("run failed at log_id %s: %s", stats.last_log_id or _checkpoint_of(state), exc)
            finally:
                stats.flag_writes_pending = state.pending_count()
                api.close()
        secrets.mask_stanza()
    except LeaseHeld as exc:  # another search head collects: one INFO line, nothing written
        log.info("%s", exc)
        runlog.close()
        return True
    except ConfigError as exc:
        log.error("input %s is misconfigured, nothing collected: %s", input_name(stanza), exc)
    except CredentialError as exc:
        log.error("input %s: %s", input_name(stanza), exc)
    except (StateError, StreamClosed) as exc:
        log.error("%s", exc)
    except Exception as exc:
        log.exception("run failed unexpectedly: %s: %s", type(exc).__name__, exc)
    _summary(runlog, status, stats, api, time.monotonic() - started, params.get("interval"))
    runlog.close()
    return status != "error"


class _Secrets:
    """The run's secrets. A typed one moves to storage/passwords at the
    start (the stanza is masked at the end of the run: splunkd restarts an
    input whose stanza changes); a masked client secret is read from the
    store only when a token must be requested, so a run with a cached token
    never calls splunkd."""

    def __init__(self, config: InputConfig, metadata: Metadata, runlog: RunLog) -> None:
        self.config = config
        self.metadata = metadata
        self.runlog = runlog
        self.masked: Dict[str, str] = {}

    def _store(self):
        from .credentials import CredentialStore

        return CredentialStore(self.metadata.get("server_uri") or "", self.metadata.get("session_key") or "")

    def prepare(self) -> InputConfig:
        """The config to run with: typed secrets stored, a masked proxy
        password read (every call needs the proxy)."""
        import dataclasses

        from .credentials import CredentialError, resolve_secrets, stored_proxy_url

        config = self.config
        if not config.secret_is_masked or _proxy_password_typed(config):
            # If the store cannot take a newly typed secret, the run still
            # collects with it (the admin gave it) and says so, every run,
            # until it works.
            try:
                config, self.masked = resolve_secrets(config, self._store())
            except CredentialError as exc:
                if config.secret_is_masked or MASK in (config.proxy_url or ""):
                    raise
                self.runlog.logger.error("%s; the secret stays in plain text in inputs.conf until this works", exc)
        elif MASK in (config.proxy_url or ""):
            config = dataclasses.replace(config, proxy_url=stored_proxy_url(self._store(), config))
        self.runlog.hide([config.client_secret, proxy_password(config.proxy_url)])
        self.config = config
        return config

    def client_secret(self) -> str:
        if self.config.client_secret == MASK:
            import dataclasses

            from .credentials import stored_client_secret

            secret = stored_client_secret(self._store(), self.config.name)
            self.runlog.hide([secret])
            self.config = dataclasses.replace(self.config, client_secret=secret)
        return self.config.client_secret

    def mask_stanza(self) -> None:
        """Mask newly stored secrets in the input's stanza: last in the run."""
        if not self.masked:
            return
        from .credentials import CredentialError

        log = self.runlog.logger
        try:
            self._store().mask_input(self.config.name, **self.masked)
        except CredentialError as exc:
            log.error("%s; the secret stays in plain text in inputs.conf until this works", exc)
            return
        moved = ", ".join(sorted(self.masked))
        log.info("moved %s into Splunk's credential store and masked it in the input's settings", moved)


def _proxy_password_typed(config: InputConfig) -> bool:
    password = proxy_password(config.proxy_url)
    return bool(password) and password != MASK


def _checkpoint_of(state) -> str:
    checkpoint = state.checkpoint()
    return checkpoint.log_id if checkpoint else "-"


def _summary(runlog: RunLog, status: str, stats, api, duration: float, interval) -> None:
    """The one line per run SPEC §7 asks for, key=value for Splunk's extraction."""
    lag = stats.lag_seconds(time.time())
    api_stats = api.stats if api else None
    fields = {
        "status": status,
        "logs_read": stats.logs_read,
        "events_written": stats.events_written,
        "signups": stats.signups,
        "logins": stats.logins,
        "other_events": stats.other_events,
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
    runlog.summary(
        logging.ERROR if status == "error" else logging.WARNING if status == "incomplete" else logging.INFO, line
    )
    if lag is not None and not stats.caught_up and lag > LAG_WARNING_SECONDS:
        runlog.logger.warning(
            "the input is %.1f hours behind the tenant's newest logs; Auth0 keeps logs for 1 to 30 days by plan "
            "and older ones are lost for good: check the rate limits and the interval",
            lag / 3600,
        )
