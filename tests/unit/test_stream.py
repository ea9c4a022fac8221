"""The page writer (stream.py) against splunklib's own event format and a strict XML parser.

splunklib's `Event.write_to` is the model: for the same events, our page
must parse to the same elements, attributes and text, whatever the data.
"""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET

import pytest
from splunklib.modularinput import Event, EventWriter

from ta_auth0 import activity
from ta_auth0.stream import EventStream, StreamClosed

ODD_TEXTS = [
    "plain",
    "Zoë 名前 😀 ünïcødé",
    "<script>&\"'</script>",
    "a ]]> cdata end",
    "line\nbreak\r\ncarriage\ttab",
    "controls \x00 \x01 \x08 \x0b \x0c \x1b \x1f \x7f \x85",
    "lone \ud800 surrogate \udfff and \ufffe \uffff",
    "Mozilla/5.0 " + "x" * 60_000,
]


class CountingOut(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.flushes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        return super().write(data)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def ours(events, stanza="auth0_activity://prod", host="t.auth0.com", index="auth0", close=True) -> bytes:
    out = io.BytesIO()
    stream = EventStream(out)
    stream.writer(stanza, "auth0", host, index).write_page(events)
    if close:
        stream.close()
    return out.getvalue()


def splunklibs(events, stanza="auth0_activity://prod", host="t.auth0.com", index="auth0") -> bytes:
    out = io.StringIO()
    writer = EventWriter(output=out, error=io.StringIO())
    for time_, sourcetype, data in events:
        writer.write_event(
            Event(data=data, stanza=stanza, time=time_, host=host, index=index, source="auth0", sourcetype=sourcetype)
        )
    writer.close()
    return out.getvalue().encode("utf-8")


def shape(document: bytes) -> list:
    """Each event as (attributes, [(child tag, text)]): what splunkd reads."""
    root = ET.fromstring(document)  # strict: any invalid character or markup fails here
    assert root.tag == "stream"
    return [(dict(event.attrib), [(child.tag, child.text) for child in event]) for event in root]


def data_event(text: str) -> tuple:
    return ("1795169472.345", "auth0_activity", activity.to_json({"userName": text, "userAgent": text}))


@pytest.mark.parametrize("text", ODD_TEXTS, ids=lambda t: repr(t[:24]))
def test_odd_data_reaches_splunkd_exactly(text):
    document = ours([data_event(text)])
    (attrs, children), *_ = shape(document)
    data = dict(children)["data"]
    assert json.loads(data) == {"userName": text, "userAgent": text}


@pytest.mark.parametrize("text", [t for t in ODD_TEXTS if not any("\ud800" <= c <= "\udfff" for c in t)])
def test_same_events_as_splunklib_writes(text):
    events = [data_event(text), (None, "auth0", '{"log_id":"9","data":{"type":"f"}}'), data_event("second")]
    assert shape(ours(events)) == shape(splunklibs(events))


def test_stanza_and_host_are_escaped_like_splunklib():
    events = [data_event("x")]
    odd = dict(stanza='auth0_activity://a "b" & <c>\nd', host="h&<>", index="i&")
    assert shape(ours(events, **odd)) == shape(splunklibs(events, **odd))


def test_without_index_or_time_the_elements_are_left_out():
    events = [(None, "auth0", "{}")]
    assert shape(ours(events, index=None)) == shape(splunklibs(events, index=None))
    assert b"<index>" not in ours(events, index=None) and b"<time>" not in ours(events, index=None)


def test_a_page_is_one_write_and_one_flush():
    out = CountingOut()
    writer = EventStream(out).writer("auth0_activity://prod", "auth0", "t", None)
    assert writer.write_page([data_event(str(i)) for i in range(100)]) == 100
    assert (out.writes, out.flushes) == (1, 1)
    assert writer.write_page([]) == 0
    assert (out.writes, out.flushes) == (1, 1)  # an empty page writes nothing


def test_pages_and_inputs_share_one_stream():
    out = io.BytesIO()
    stream = EventStream(out)
    first = stream.writer("auth0_activity://a", "auth0", "a.auth0.com", None)
    second = stream.writer("auth0_activity://b", "auth0", "b.auth0.com", "x")
    first.write_page([data_event("1")])
    second.write_page([data_event("2"), data_event("3")])
    first.write_page([data_event("4")])
    stream.close()
    events = shape(out.getvalue())
    assert [attrs["stanza"] for attrs, _ in events] == ["auth0_activity://" + n for n in "abba"]
    assert out.getvalue().count(b"<stream>") == 1 and out.getvalue().endswith(b"</stream>")


def test_an_empty_run_writes_nothing():
    out = io.BytesIO()
    EventStream(out).close()
    assert out.getvalue() == b""


def test_a_closed_pipe_is_a_stream_closed_error():
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "wb", buffering=0) as out:
        writer = EventStream(out).writer("auth0_activity://prod", "auth0", "t", None)
        with pytest.raises(StreamClosed, match="page not delivered"):
            writer.write_page([data_event("lost")])
