"""The version every Auth0 call carries in its User-Agent: app.conf's [id] version."""

import configparser
import os

import ta_auth0
from tests.addon import APP_DIR


def test_the_version_is_app_confs_and_the_user_agent_carries_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # splunkd starts the script from anywhere
    conf = configparser.ConfigParser()
    conf.read(os.path.join(APP_DIR, "default", "app.conf"), encoding="utf-8")
    assert ta_auth0.app_version() == conf["id"]["version"]
    assert ta_auth0.user_agent() == f"TA-auth0/{conf['id']['version']}"


def test_only_the_id_stanzas_version_counts():
    text = "[launcher]\nversion = 9.9.9\n\n[id]\nname = TA-auth0\nversion  =  1.2.3 \n\n[ui]\nversion = 0\n"
    assert ta_auth0.version_in(text) == "1.2.3"
    assert ta_auth0.version_in("[id]\nname = TA-auth0\n\n[launcher]\nversion = 9.9.9\n") == "unknown"
    assert ta_auth0.version_in("[launcher]\nversion = 9.9.9\n") == "unknown"
    assert ta_auth0.version_in("# [id]\n[id]\nversion=2.0.0\n") == "2.0.0"
