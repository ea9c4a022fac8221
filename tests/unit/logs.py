"""The add-on's log records, read in a unit test.

The `ta_auth0` logger may not propagate to pytest's caplog (runlog sets it up
for splunkd), so a handler of its own is attached for the test's duration."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def logged(level: int = logging.INFO):
    """Yields the list of LogRecords the add-on logs at `level` and above inside."""
    records = []
    handler = logging.Handler(level)
    handler.emit = records.append
    logger = logging.getLogger("ta_auth0")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def messages(records) -> list:
    return [record.getMessage() for record in records]
