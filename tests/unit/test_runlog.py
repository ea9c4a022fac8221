"""ta_auth0.log and stderr: one line per message, context, secrets masked."""

import io
import logging
import logging.handlers
import os
import re

from ta_auth0.runlog import RunLog
from tests.addon import REPO


def _props_line_regex():
    with open(os.path.join(REPO, "default", "props.conf"), encoding="utf-8") as handle:
        line = next(row for row in handle if row.startswith("EXTRACT-ta_auth0_line"))
    return re.compile(
        line.split("=", 1)[1].strip().replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
    )


def test_lines_carry_context_and_hide_secrets(tmp_path):
    err = io.StringIO()
    runlog = RunLog("my input", err, str(tmp_path))
    runlog.hide(["hunter2-secret", None, "********"])
    runlog.logger.warning("before the domain is known")
    runlog.set_domain("example.us.auth0.com")
    runlog.logger.error("token hunter2-secret failed\nsecond line")
    runlog.close()

    lines = err.getvalue().splitlines()
    assert lines[0].startswith("WARN pid=") and 'input="my input" before' in lines[0]
    assert 'input="my input" domain=example.us.auth0.com token ******** failed second line' in lines[1]
    with open(runlog.path, encoding="utf-8") as handle:
        logged = handle.read().splitlines()
    assert len(logged) == 2 and "hunter2" not in "".join(logged)

    regex = _props_line_regex()  # the shipped extraction reads these lines
    first, second = (regex.match(line) for line in logged)
    assert first.group("input") == "my input" and first.group("domain") is None
    assert second.group("input") == "my input" and second.group("domain") == "example.us.auth0.com"
    assert second.group("log_level") == "ERROR"


def test_plain_names_are_not_quoted(tmp_path):
    err = io.StringIO()
    runlog = RunLog("prod", err, None)
    runlog.logger.info("hello")
    runlog.close()
    assert " input=prod hello" in err.getvalue()
    assert runlog.path is None


def test_stderr_lines_start_with_the_level_splunkd_reads(tmp_path):
    err = io.StringIO()
    runlog = RunLog("prod", err, None)
    runlog.set_level("DEBUG")
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        runlog.logger.log(level, "message")
    runlog.close()
    assert [line.split(" ", 1)[0] for line in err.getvalue().splitlines()] == [
        "DEBUG",
        "INFO",
        "WARN",
        "ERROR",
        "FATAL",
    ]


def test_the_level_setting_drops_the_lines_below_it(tmp_path):
    err = io.StringIO()
    runlog = RunLog("prod", err, None)
    runlog.logger.debug("not at INFO")  # the default
    runlog.set_level("ERROR")
    runlog.logger.warning("not at ERROR")
    runlog.logger.error("shown")
    runlog.set_level("DEBUG")
    runlog.logger.debug("shown at DEBUG")
    runlog.close()
    assert [line.split(" ", 3)[3] for line in err.getvalue().splitlines()] == ["shown", "shown at DEBUG"]


def test_the_file_is_ta_auth0_log_in_splunks_log_folder_with_a_local_iso_timestamp(tmp_path, local_time_zone_new_york):
    (tmp_path / "var" / "log" / "splunk").mkdir(parents=True)  # Splunk's own folder, already there
    runlog = RunLog("prod", io.StringIO(), str(tmp_path))
    assert runlog.path == str(tmp_path / "var" / "log" / "splunk" / "ta_auth0.log")
    # One record in winter and one in summer: each with its own offset,
    # whatever the season of the test run.
    for created in (1795510800.25, 1782896400.5):  # 2026-11-24T09:00:00.250Z, 2026-07-01T09:00:00.500Z
        record = runlog.logger.makeRecord("ta_auth0", logging.INFO, __file__, 1, "at a known time", (), None)
        record.created, record.msecs = created, (created % 1) * 1000
        runlog.logger.handle(record)
    runlog.close()
    with open(runlog.path, encoding="utf-8") as handle:
        winter, summer = handle.read().splitlines()
    assert winter.startswith("2026-11-24T04:00:00.250-0500 INFO pid=")  # New York
    assert summer.startswith("2026-07-01T05:00:00.500-0400 INFO pid=")
    assert winter.endswith(" input=prod at a known time")


def test_the_file_rotates_at_25_mb_keeping_5(tmp_path):
    # README "Troubleshooting": ta_auth0.log rotates, 25 MB x 5.
    runlog = RunLog("prod", io.StringIO(), str(tmp_path))
    (handler,) = [h for h in runlog.logger.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert (handler.maxBytes, handler.backupCount) == (25 * 1024 * 1024, 5)
    runlog.close()


def test_a_run_that_logs_nothing_leaves_no_file(tmp_path):
    runlog = RunLog("prod", io.StringIO(), str(tmp_path))
    runlog.close()
    assert not os.path.exists(runlog.path)


def test_a_log_folder_that_cannot_be_made_leaves_stderr_only_and_says_so(tmp_path):
    home = tmp_path / "home"
    home.write_text("a file, not a folder")
    err = io.StringIO()
    runlog = RunLog("prod", err, str(home))
    runlog.logger.info("still logged")
    runlog.close()
    assert runlog.path is None
    first, second = err.getvalue().splitlines()
    expected = os.path.join(str(home), "var", "log", "splunk", "ta_auth0.log")
    assert first.startswith("WARN ") and f"cannot write {expected} ([Errno 20] Not a directory: " in first
    assert first.endswith("): logging to splunkd.log only")
    assert second.endswith(" still logged")


def test_context_values_are_quoted_only_when_splunk_would_split_them():
    err = io.StringIO()
    for name in ("PROD-X", "a=b", 'say "hi"', "café prod", ""):
        runlog = RunLog(name, err, None)
        runlog.logger.info("m")
        runlog.close()
    inputs = [line.split(" input=", 1)[1][: -len(" m")] for line in err.getvalue().splitlines()]
    assert inputs == ["PROD-X", '"a=b"', '"say \\"hi\\""', '"café prod"', "-"]


def test_a_longer_secret_that_contains_a_shorter_one_is_masked_whole():
    err = io.StringIO()
    runlog = RunLog("prod", err, None)
    runlog.hide(["bc"])
    runlog.hide(["abc"])
    runlog.logger.info("secret abc and bc")
    runlog.close()
    assert err.getvalue().rstrip("\n").endswith(" secret ******** and ********")


def test_carriage_returns_do_not_split_a_line():
    err = io.StringIO()
    runlog = RunLog("prod", err, None)
    runlog.logger.info("one\rtwo\r\nthree")
    runlog.close()
    assert err.getvalue().endswith(" input=prod one two  three\n")


def test_each_line_goes_once_to_the_run_of_this_input_only():
    root_records = []
    catcher = logging.Handler()
    catcher.emit = root_records.append
    logging.getLogger().addHandler(catcher)
    try:
        first, second = io.StringIO(), io.StringIO()
        RunLog("one", first, None)  # not closed: a run that died before its end
        runlog = RunLog("two", second, None)
        logging.getLogger("ta_auth0").info("from the package's logger")
        runlog.close()
        logging.getLogger("ta_auth0").error("after the run")
    finally:
        logging.getLogger().removeHandler(catcher)
    assert first.getvalue() == ""
    (line,) = second.getvalue().splitlines()
    assert line.endswith(" input=two from the package's logger")
    assert root_records == []  # not propagated: splunkd gets each line once
