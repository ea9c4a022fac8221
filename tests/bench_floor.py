"""The bench's floor: the least a client can do to turn Auth0 logs into Splunk events.

`make bench` runs it beside the add-on over the same tenant and prints the
add-on's CPU as a multiple of this script's (issue 8). It does what the
add-on must do for one run and nothing more: one keep-alive HTTPS
connection (http.client + ssl, verifying the CA in REQUESTS_CA_BUNDLE, as
the add-on does), a token (cached in a state file between runs, so an idle
run costs what the add-on's idle run should), the oldest log by search mode
and then `from`/`take=100` pages, and per page one write of the same event
XML the add-on writes (splunklib's Event.write_to: `<event stanza=...
unbroken="1"><time>..</time><source>..</source><sourcetype>..</sourcetype>
<index>..</index><host>..</host><data>..</data><done /></event>`, text
escaped and non-ASCII as character references), with the same JSON as
ta_auth0.activity.event_data for `s`/`ss` logs and, with collect = all, the
log stream's `{"log_id": ..., "data": <the log>}` for the others.

It is not the add-on: no user reads (the bench tenant's logins all carry a
login count), no flag writes, no crash safety (the state is written once,
at the end), no retries. Standard library only, so it runs on the same bare
interpreter as the add-on. Its settings arrive as JSON on stdin (the secret
never on the command line):
{"domain", "client_id", "client_secret", "state_file", "collect", "index",
"stanza"}; the events' host is the domain, as the add-on's.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time
from datetime import datetime
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

PAGE = 100


def main() -> int:
    config = json.load(sys.stdin)
    state = _load(config["state_file"])
    host, _, port = config["domain"].partition(":")
    context = ssl.create_default_context(cafile=os.environ.get("REQUESTS_CA_BUNDLE"))
    connection = http.client.HTTPSConnection(host, int(port or 443), context=context, timeout=60)
    if not state.get("token") or state.get("expires_at", 0) - time.time() < 1800:
        answer = _call(
            connection,
            "POST",
            "/oauth/token",
            {
                "grant_type": "client_credentials",
                "client_id": config["client_id"],
                "client_secret": config["client_secret"],
                "audience": f"https://{config['domain']}/api/v2/",
            },
        )
        state["token"], state["expires_at"] = answer["access_token"], time.time() + answer["expires_in"]
    auth = "Bearer " + state["token"]
    writer = _Writer(sys.stdout.buffer, config)
    checkpoint, logs_read, calls = state.get("checkpoint"), 0, 0
    if checkpoint is None:
        first = _call(connection, "GET", "/api/v2/logs?sort=date:1&per_page=1&page=0", auth=auth)
        calls += 1
        if first:
            writer.page(first)
            checkpoint, logs_read = first[-1]["log_id"], len(first)
    while checkpoint is not None:
        page = _call(connection, "GET", f"/api/v2/logs?from={quote(checkpoint)}&take={PAGE}", auth=auth)
        calls += 1
        if page:
            writer.page(page)
            checkpoint, logs_read = page[-1]["log_id"], logs_read + len(page)
        if len(page) < PAGE:
            break
    writer.close()
    state["checkpoint"] = checkpoint
    _save(config["state_file"], state)
    connection.close()
    sys.stderr.write(f"floor summary: logs_read={logs_read} events_written={writer.events} api_calls={calls}\n")
    return 0


def _call(connection, method, path, body=None, auth=None):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = auth
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise SystemExit(f"floor: {method} {path} answered {response.status}: {payload[:200]!r}")
    return json.loads(payload)


class _Writer:
    """splunkd's XML stream, one write per page."""

    def __init__(self, out, config) -> None:
        self.out = out
        self.all = config.get("collect") == "all"
        self.tenant = config["domain"]
        self.known: set = set()
        opening = '<event stanza={} unbroken="1"><time>'.format(quoteattr(config["stanza"]))
        rest = "</sourcetype><index>{}</index><host>{}</host><data>".format(
            escape(config["index"]), escape(config["domain"])
        )
        self.heads = {
            kind: (opening, "</time><source>auth0</source><sourcetype>" + kind + rest)
            for kind in ("auth0_activity", "auth0")
        }
        self.started = False  # <stream> is written with the first event, as splunklib does
        self.events = 0

    def page(self, logs) -> None:
        parts = []
        for log in logs:
            kind = log.get("type")
            if kind in ("s", "ss"):
                head, data = self.heads["auth0_activity"], self._activity(log)
            elif self.all:
                head, data = self.heads["auth0"], {"log_id": log.get("log_id"), "data": log}
            else:
                continue
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            parts.append(head[0] + _epoch(log.get("date")) + head[1] + escape(text) + "</data><done /></event>")
        self.events += len(parts)
        if parts:
            if not self.started:
                parts.insert(0, "<stream>")
                self.started = True
            self.out.write("".join(parts).encode("ascii", "xmlcharrefreplace"))
            self.out.flush()

    def _activity(self, log) -> dict:
        details = log.get("details") if isinstance(log.get("details"), dict) else {}
        counts = [
            (prompt.get("stats") or {}).get("loginsCount")
            for prompt in details.get("prompts") or ()
            if isinstance(prompt, dict)
        ]
        counts.append((details.get("stats") or {}).get("loginsCount"))
        count = max((c for c in counts if isinstance(c, int)), default=None)
        user = log.get("user_id")
        # SPEC §5 without the user read: an unknown user with no count is a Signup.
        known = user in self.known
        message = "Signup" if log.get("type") == "ss" or (not known and (count is None or count == 1)) else "Login"
        if user:
            self.known.add(user)
        transaction = (details.get("body") or {}).get("transaction") if isinstance(details.get("body"), dict) else None
        return {
            "message": message,
            "application": log.get("client_name"),
            "clientIP": log.get("ip"),
            "protocol": transaction.get("protocol") if isinstance(transaction, dict) else None,
            "userName": log.get("user_name"),
            "userId": user,
            "log_id": log.get("log_id"),
            "date": log.get("date"),
            "type": log.get("type"),
            "description": log.get("description"),
            "connection": log.get("connection"),
            "connection_id": log.get("connection_id"),
            "strategy": log.get("strategy"),
            "strategy_type": log.get("strategy_type"),
            "client_id": log.get("client_id"),
            "user_agent": log.get("user_agent"),
            "hostname": log.get("hostname"),
            "loginsCount": count,
            "tenant": self.tenant,
        }

    def close(self) -> None:
        if self.started:
            self.out.write(b"</stream>")
            self.out.flush()


def _epoch(date) -> str:
    # Auth0 writes 2024-01-02T03:04:05.678Z; Python 3.9 reads it with +00:00.
    return "{:.3f}".format(datetime.fromisoformat(date[:-1] + "+00:00").timestamp())


def _load(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def _save(path, state) -> None:
    temporary = path + ".tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
