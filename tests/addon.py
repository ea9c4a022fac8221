"""Run the add-on exactly as splunkd does: a subprocess, XML on stdin.

`run_input` builds the `<input>` document splunkd sends to a modular input,
starts `bin/auth0_activity.py` with the interpreter under test, and parses
its stdout as the XML event stream splunkd would read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The app folder under test (the repo, or an unpacked package) and the
# interpreter that runs it (make test passes a bare venv: nothing installed,
# like Splunk's own Python as far as our dependencies go).
APP_DIR = os.path.abspath(os.environ.get("ADDON_APP_DIR") or REPO)
# The app's KV store collections, which splunkd learns when the app is installed.
COLLECTIONS_CONF = os.path.join(APP_DIR, "default", "collections.conf")
ADDON_PYTHON = os.environ.get("ADDON_PYTHON") or sys.executable
SCRIPT = os.path.join(APP_DIR, "bin", "auth0_activity.py")


@dataclass
class Event:
    """One `<event>` of the stream, with its JSON data decoded."""

    data: dict
    time: Optional[str]
    host: Optional[str]
    source: Optional[str]
    sourcetype: Optional[str]
    index: Optional[str]
    stanza: Optional[str]
    raw: str


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    events: List[Event] = field(default_factory=list)

    @property
    def log_ids(self) -> List[str]:
        return [event.data["log_id"] for event in self.events]

    def summary(self) -> Dict[str, str]:
        """The key=value pairs of the run's summary line (stderr)."""
        lines = [line for line in self.stderr.splitlines() if "run summary:" in line]
        assert len(lines) == 1, f"expected one summary line, got {lines!r}\n{self.stderr}"
        pairs = lines[0].split("run summary:", 1)[1].split()
        return dict(pair.split("=", 1) for pair in pairs)


def input_xml(
    stanza: str,
    params: Dict[str, str],
    checkpoint_dir: str,
    server_uri: str = "https://127.0.0.1:8089",
    session_key: str = "no-session",
    server_host: str = "splunk-test",
) -> str:
    """The document splunkd writes to a modular input's stdin in run mode."""
    root = _with_metadata("input", server_uri, session_key, checkpoint_dir, server_host)
    configuration = ET.SubElement(root, "configuration")
    element = ET.SubElement(configuration, "stanza", name=stanza, app="TA-auth0")
    for name, value in params.items():
        ET.SubElement(element, "param", name=name).text = value
    return ET.tostring(root, encoding="unicode")


def validation_xml(name: str, params: Dict[str, str], server_uri: str, session_key: str, checkpoint_dir: str) -> str:
    """The document splunkd sends with --validate-arguments."""
    root = _with_metadata("items", server_uri, session_key, checkpoint_dir)
    item = ET.SubElement(root, "item", name=name)
    for key, value in params.items():
        ET.SubElement(item, "param", name=key).text = value
    return ET.tostring(root, encoding="unicode")


def _with_metadata(
    tag: str, server_uri: str, session_key: str, checkpoint_dir: str, server_host: str = "splunk-test"
) -> ET.Element:
    """The root element with what splunkd tells every invocation."""
    root = ET.Element(tag)
    for name, text in (
        ("server_host", server_host),
        ("server_uri", server_uri),
        ("session_key", session_key),
        ("checkpoint_dir", checkpoint_dir),
    ):
        ET.SubElement(root, name).text = text
    return root


def addon_env(ca_bundle: str, splunk_home: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A clean environment: the test CA trusted, no proxy, no user site."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythonpath")
    }
    env.update(
        {
            "REQUESTS_CA_BUNDLE": ca_bundle,
            "SPLUNK_HOME": splunk_home,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(extra or {})
    return env


# Mutation testing (make mutants) needs the add-on's code to run inside the
# test process: mutmut learns which tests reach a function, and switches a
# mutant on, only there. With TA_AUTH0_IN_PROCESS=1, run_script calls what
# the entry script calls (modinput.run, or splunklib's Script for --scheme
# and --validate-arguments) in this process, with the same argv, stdin bytes
# and environment, and returns what the subprocess would have. Tests that
# need a real process (killed, a closed pipe, a fresh interpreter's imports)
# are marked `subprocess` and left out of that mode (scripts/mutants.py).
IN_PROCESS = os.environ.get("TA_AUTH0_IN_PROCESS") == "1"


def run_script(args: List[str], stdin: str, env: Dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    if IN_PROCESS:
        return _run_in_process(args, stdin, env)
    return subprocess.run(
        [ADDON_PYTHON, SCRIPT, *args],
        input=stdin.encode("utf-8"),
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd="/",
        check=False,
    )


def _run_in_process(args: List[str], stdin: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    import io

    from ta_auth0 import modinput
    from ta_auth0.scheme import Auth0ActivityInput

    stdout, stderr = io.BytesIO(), io.StringIO()
    with _Environment(env):
        if args:
            from splunklib.modularinput.event_writer import EventWriter

            text = io.StringIO()
            code = Auth0ActivityInput().run_script([SCRIPT, *args], EventWriter(text, stderr), io.StringIO(stdin))
            stdout.write(text.getvalue().encode("utf-8"))
        else:
            code = modinput.run(io.BytesIO(stdin.encode("utf-8")), stdout, stderr)
    return subprocess.CompletedProcess([SCRIPT, *args], code, stdout.getvalue(), stderr.getvalue().encode("utf-8"))


class _Environment:
    """os.environ as the subprocess would have had it, for one in-process
    run. Not a lock: the fake splunkd's validation of a stanza edit runs in
    its own thread while the run that made the edit waits for the answer, so
    the two swaps nest in time. mutmut's switch (MUTANT_UNDER_TEST) is kept."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.env = env

    def __enter__(self) -> None:
        self.saved = dict(os.environ)
        keep = {key: self.saved[key] for key in ("MUTANT_UNDER_TEST",) if key in self.saved}
        os.environ.clear()
        os.environ.update({**self.env, **keep})

    def __exit__(self, *exc) -> None:
        os.environ.clear()
        os.environ.update(self.saved)


def parse_stream(stdout: str) -> List[Event]:
    """splunkd's view of stdout: one `<stream>` of `<event>`s (or nothing)."""
    if not stdout.strip():
        return []
    root = ET.fromstring(stdout)
    assert root.tag == "stream", stdout[:200]
    events = []
    for element in root:
        assert element.tag == "event", element.tag
        raw = element.findtext("data")
        events.append(
            Event(
                data=json.loads(raw),
                time=element.findtext("time"),
                host=element.findtext("host"),
                source=element.findtext("source"),
                sourcetype=element.findtext("sourcetype"),
                index=element.findtext("index"),
                stanza=element.get("stanza"),
                raw=raw,
            )
        )
    return events


def run_input(
    stanza: str,
    params: Dict[str, str],
    checkpoint_dir: str,
    env: Dict[str, str],
    server_uri: str = "https://127.0.0.1:8089",
    session_key: str = "no-session",
    timeout: float = 120,
    server_host: str = "splunk-test",
) -> Result:
    document = input_xml(stanza, params, checkpoint_dir, server_uri, session_key, server_host)
    done = run_script([], document, env, timeout)
    stdout = done.stdout.decode("utf-8")
    return Result(done.returncode, stdout, done.stderr.decode("utf-8", "replace"), parse_stream(stdout))
