"""splunkd's XML event stream, written a page at a time.

The format is splunklib's (`modularinput.Event.write_to` and
`EventWriter`): `<stream>`, then per event
`<event stanza="…" unbroken="1"><time>…</time><source>…</source>
<sourcetype>…</sourcetype><index>…</index><host>…</host><data>…</data>
<done /></event>`, then `</stream>`. We go around splunklib here, and only
here, for cost: it builds and serialises an ElementTree per event and
flushes stdout after each one, which was about 40 % of the add-on's CPU.
This writer builds a page of up to 100 events as one string, writes it with
one call and flushes once, before the page's checkpoint commits. The text
is UTF-8 (splunklib writes ASCII with character references; splunkd reads
both).

Escaping: `&`, `<`, `>` in text, and also `"` and line breaks in the stanza
attribute, as ElementTree does. Characters XML 1.0 cannot carry at all (lone
surrogates, U+FFFE, U+FFFF) can only sit inside JSON strings of the data,
where they are written as JSON escapes (`\\ufffe`): the event's JSON still
decodes to exactly the same text, and splunkd never sees an invalid stream.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Dict, Iterable, Optional, Tuple

# (time as "1700000000.123" or None, sourcetype, data)
StreamEvent = Tuple[Optional[str], str, str]

_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attribute(text: str) -> str:
    return escape_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#09;")


def _json_escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def _xml_safe_utf8(text: str) -> bytes:
    """UTF-8 with the characters XML cannot carry JSON-escaped. Cheap when
    there are none (nearly always): ASCII text cannot hold them, lone
    surrogates make the strict encoding fail, and U+FFFE/U+FFFF are found by
    a plain search; a regex over every page cost a millisecond a page."""
    if not text.isascii():
        try:
            if "\ufffe" not in text and "\uffff" not in text:
                return text.encode("utf-8")
        except UnicodeEncodeError:
            pass
        text = _NOT_XML.sub(_json_escape, text)
    return text.encode("utf-8")


class StreamClosed(OSError):
    """splunkd stopped reading the event stream: the page was not delivered."""


class EventStream:
    """stdout as splunkd reads it: `<stream>`, pages of events, `</stream>`."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._started = False

    def writer(self, stanza: str, source: str, host: str, index: Optional[str]) -> PageWriter:
        """The page writer of one input: stanza, source, host and index are fixed."""
        return PageWriter(self, stanza, source, host, index)

    def write(self, text: str) -> None:
        """One write and one flush of whole events (the stream opens on the first)."""
        if not self._started:
            text = "<stream>" + text
        data = memoryview(_xml_safe_utf8(text))
        try:
            # A buffered write to a pipe whose reader went away mid-write can
            # return a short count instead of raising: write the rest, so that
            # the failure shows and the page is not taken as delivered.
            while data:
                written = self._out.write(data)
                if not written:
                    raise BrokenPipeError("stdout took nothing")
                data = data[written:]
            self._out.flush()
        except (BrokenPipeError, ValueError) as exc:  # ValueError: stdout already closed
            raise StreamClosed(f"splunkd stopped reading the event stream ({exc}): page not delivered") from None
        self._started = True

    def close(self) -> None:
        """End the stream (only if it was started: an empty run writes nothing)."""
        if self._started:
            self._out.write(b"</stream>")
        self._out.flush()


class PageWriter:
    """Events of one input, a page at a time."""

    def __init__(self, stream: EventStream, stanza: str, source: str, host: str, index: Optional[str]) -> None:
        self._stream = stream
        self._open = f'<event stanza="{escape_attribute(stanza)}" unbroken="1">'
        self._source = f"<source>{escape_text(source)}</source><sourcetype>"
        index_part = f"<index>{escape_text(index)}</index>" if index else ""
        self._after_sourcetype = f"</sourcetype>{index_part}<host>{escape_text(host)}</host><data>"
        self._prefix: Dict[str, str] = {}  # sourcetype -> everything from </time> to <data>

    def write_page(self, events: Iterable[StreamEvent]) -> int:
        """Write these events with one write and one flush; returns how many.

        When this returns, the page is in the pipe splunkd reads in order:
        the caller may commit its checkpoint. If splunkd stopped reading it
        raises StreamClosed, and nothing of the page may be committed."""
        parts = []
        count = 0
        for time_, sourcetype, data in events:
            prefix = self._prefix.get(sourcetype)
            if prefix is None:
                prefix = self._prefix[sourcetype] = self._source + escape_text(sourcetype) + self._after_sourcetype
            parts.append(self._open)
            if time_ is not None:
                parts.append(f"<time>{time_}</time>")
            parts.append(prefix)
            parts.append(escape_text(data))
            parts.append("</data><done /></event>")
            count += 1
        if count:
            self._stream.write("".join(parts))
        return count
