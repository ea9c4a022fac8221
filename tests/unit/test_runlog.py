"""ta_auth0.log and stderr: one line per message, context, secrets masked."""

import io
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
