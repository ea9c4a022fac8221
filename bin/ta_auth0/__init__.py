"""TA-auth0: Auth0 signups and logins into Splunk, pulled from the Management API.

Modules, each owning one concern (see README "Development"):
modinput (run mode: splunkd's XML in, one run per stanza), scheme (--scheme
and --validate-arguments through splunklib), config (parameters), activity
(Signup/Login rules and the events' JSON, pure), collector (one run),
stream (splunkd's XML event stream), flags (users' flag writes), auth0_api
(every Auth0 call), pacing (Auth0's rate limits), state (sqlite checkpoint
store), credentials (Splunk's credential store), runlog (logging).
"""

APP_NAME = "TA-auth0"


def app_version() -> str:
    """The version in default/app.conf, the one place it is kept."""
    import os

    conf = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "default", "app.conf"
    )
    try:
        with open(conf, encoding="utf-8") as handle:
            return version_in(handle.read())
    except OSError:
        return "unknown"


def version_in(app_conf: str) -> str:
    """The `version` of app.conf's [id] stanza (what Splunk shows), "unknown" if none."""
    import re

    match = re.search(r"^\[id\][^\[]*?^version\s*=\s*(\S+)", app_conf, re.M | re.S)
    return match.group(1) if match else "unknown"


def user_agent() -> str:
    """What every Auth0 call says it is (Auth0 shows it in the tenant's logs)."""
    return f"TA-auth0/{app_version()}"
