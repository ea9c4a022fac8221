"""Logging for a run: $SPLUNK_HOME/var/log/splunk/ta_auth0.log and stderr.

splunkd copies a modular input's stderr into splunkd.log and reads the first
word as the level (anything unprefixed counts as ERROR), so stderr lines are
`INFO ...`, `WARN ...`, `ERROR ...`. The file is indexed into `_internal` by
Splunk's own monitor of var/log/splunk. Every known secret is masked in
every line, whatever the code that logged it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from typing import Iterable, Optional, TextIO

LOGGER_NAME = "ta_auth0"
LOG_FILE = "ta_auth0.log"
MAX_BYTES = 25 * 1024 * 1024
BACKUPS = 5
_SPLUNK_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}
MASK = "********"


class _RedactingFormatter(logging.Formatter):
    """Formats on one line, then masks every registered secret."""

    def __init__(self, fmt: str, secrets: list[str], context: dict, splunk_levels: bool = False) -> None:
        super().__init__(fmt)
        self._secrets = secrets
        self._context = context
        self._splunk_levels = splunk_levels

    def format(self, record: logging.LogRecord) -> str:
        record.context = " ".join(f"{key}={_quoted(value)}" for key, value in self._context.items())
        if self._splunk_levels:
            record.splunk_level = _SPLUNK_LEVELS.get(record.levelname, record.levelname)
        text = super().format(record).replace("\r", " ").replace("\n", " ")
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:  # noqa: N802
        # ISO-8601 with milliseconds and offset: unambiguous for Splunk's timestamp extraction.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}{time.strftime('%z', time.localtime(record.created))}"


def _quoted(value: object) -> str:
    """A value Splunk's key=value extraction reads whole: quoted if it has
    spaces or quotes."""
    text = str(value)
    if not text or any(ch.isspace() or ch in '"=' for ch in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class RunLog:
    """The logger of one modular input process, with the secrets to hide."""

    def __init__(self, input_name: str, stderr: TextIO, splunk_home: Optional[str]) -> None:
        self.secrets: list[str] = []
        self.logger = logging.getLogger(LOGGER_NAME)
        self.logger.propagate = False
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
        # key=value context on every line, for Splunk's automatic extraction;
        # the domain joins once the configuration is read (set_domain).
        self.context = {"pid": os.getpid(), "input": input_name or "-"}
        err = logging.StreamHandler(stderr)
        err.setFormatter(
            _RedactingFormatter("%(splunk_level)s %(context)s %(message)s", self.secrets, self.context, True)
        )
        self.logger.addHandler(err)
        self.path = None
        if splunk_home:
            self.path = os.path.join(splunk_home, "var", "log", "splunk", LOG_FILE)
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                handler = logging.handlers.RotatingFileHandler(
                    self.path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True
                )
            except OSError as exc:
                self.logger.warning("cannot write %s (%s): logging to splunkd.log only", self.path, exc)
                self.path = None
            else:
                handler.setFormatter(
                    _RedactingFormatter("%(asctime)s %(levelname)s %(context)s %(message)s", self.secrets, self.context)
                )
                self.logger.addHandler(handler)
        self.set_level("INFO")

    def set_domain(self, domain: str) -> None:
        self.context["domain"] = domain

    def set_level(self, level: str) -> None:
        self.logger.setLevel(getattr(logging, level, logging.INFO))

    def summary(self, level: int, message: str) -> None:
        """The run's summary line, written whatever log_level says: SPEC §7
        promises one every run, and the shipped "Input stalled" alert reads
        a run's success from it (at WARNING it would fire on healthy runs)."""
        self.logger.handle(self.logger.makeRecord(self.logger.name, level, __file__, 0, message, (), None))

    def hide(self, values: Iterable[Optional[str]]) -> None:
        """Mask these values in every line from now on (longest first)."""
        for value in values:
            if value and value != MASK and value not in self.secrets:
                self.secrets.append(value)
        self.secrets.sort(key=len, reverse=True)

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            handler.flush()
            handler.close()
            self.logger.removeHandler(handler)
