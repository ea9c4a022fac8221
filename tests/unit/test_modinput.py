"""Run mode reads splunkd's `<input>` document itself: the same way as splunklib."""

from __future__ import annotations

import io

import pytest
from splunklib.modularinput.input_definition import InputDefinition

from ta_auth0 import modinput
from ta_auth0.modinput import parse_input_definition
from tests.addon import input_xml

DOCUMENTS = [
    input_xml("auth0_activity://prod", {"domain": "example.us.auth0.com", "client_secret": "********"}, "/ckpt"),
    input_xml("auth0_activity://a b", {"domain": "x", "empty": "", "odd": "<&>\"'é 😀"}, "/var/lib/splunk/modinputs"),
    # Several stanzas, a param_list, and an element run mode does not know.
    b"""<input><server_host>sh1</server_host><server_uri>https://127.0.0.1:8089</server_uri>
    <session_key>abc</session_key><checkpoint_dir>/c</checkpoint_dir><extra>e</extra>
    <configuration>
      <stanza name="auth0_activity://one"><param name="domain">d1</param>
        <param_list name="multi"><value>v1</value><value>v2</value></param_list></stanza>
      <stanza name="auth0_activity://two"><param name="domain">d2</param><param name="blank"/></stanza>
    </configuration></input>""",
    # Something other than a stanza in the configuration, before the stanzas: skipped.
    b"""<input><session_key>k</session_key><configuration><note>n</note>
      <stanza name="auth0_activity://after"><param name="domain">d</param></stanza></configuration></input>""",
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_same_reading_as_splunklib(document):
    raw = document.encode() if isinstance(document, str) else document
    metadata, stanzas = parse_input_definition(raw)
    theirs = InputDefinition.parse(io.BytesIO(raw))
    assert metadata == theirs.metadata
    assert stanzas == theirs.inputs


def test_not_an_input_document():
    with pytest.raises(ValueError, match="expected <input>"):
        parse_input_definition(b"<items><item name='x'/></items>")


def test_an_unknown_element_in_a_stanza_is_refused_as_by_splunklib():
    document = b'<input><configuration><stanza name="s"><oops/></stanza></configuration></input>'
    with pytest.raises(ValueError):
        InputDefinition.parse(io.BytesIO(document))
    with pytest.raises(ValueError, match="unexpected <oops> in stanza 's'"):
        parse_input_definition(document)


def test_the_script_with_no_argument_runs_the_input_from_stdin(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SPLUNK_HOME", str(tmp_path))
    document = input_xml("auth0_activity://prod", {"interval": "60"}, str(tmp_path))  # nothing but an interval
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(document.encode("utf-8"))))
    monkeypatch.setattr("sys.argv", ["auth0_activity.py"])
    assert modinput.main() == 1
    err = capsys.readouterr().err
    assert "input prod is misconfigured, nothing collected: domain is required" in err
    assert "run summary: status=error" in err and "interval_s=60" in err
    # The same with argv given, whatever sys.argv holds.
    monkeypatch.setattr("sys.argv", ["pytest", "-q"])
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(document.encode("utf-8"))))
    assert modinput.main(["auth0_activity.py"]) == 1
    assert "run summary: status=error" in capsys.readouterr().err
