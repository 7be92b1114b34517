"""Every numeric setting refuses a value that is not a number with a SettingsError naming it (the
CLI's exit code 2 and one line), where a bare int()/float() used to end the process in a traceback.

The variables are read from settings.py itself (each `_int("NAME"` / `_float("NAME"`), so a setting
added later is covered without touching this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowstudio import settings as settings_module
from flowstudio.settings import SettingsError, load_settings

SOURCE = Path(settings_module.__file__).read_text()
INTEGERS = re.findall(r'_int\(\s*"([A-Z0-9_]+)"', SOURCE)
NUMBERS = re.findall(r'_float\(\s*"([A-Z0-9_]+)"', SOURCE)


@pytest.fixture(autouse=True)
def no_generated_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A set key: load_settings would otherwise generate one into FLOWSTUDIO_HOME."""
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-not-for-production")


def test_the_source_was_read() -> None:
    assert {"WORKER_CONCURRENCY", "AMQP_HEARTBEAT_SECONDS"} <= set(INTEGERS)
    assert {"LEASE_SECONDS", "HEARTBEAT_SECONDS"} <= set(NUMBERS)


# (variable, bad value, what the message says it must be): every variable, each kind's bad values
BAD = [(n, bad, "an integer") for n in INTEGERS for bad in ("abc", "1.5", "12 workers")] + [
    (n, bad, "a number") for n in NUMBERS for bad in ("abc", "nan", "inf", "1,5")
]


@pytest.mark.parametrize(("name", "bad", "must_be"), BAD)
def test_a_numeric_setting_refuses_what_is_not_its_kind_of_number(
    monkeypatch: pytest.MonkeyPatch, name: str, bad: str, must_be: str
) -> None:
    monkeypatch.setenv(name, bad)
    message = f"{name} must be {must_be}, not {bad!r}"
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        load_settings(env_file=None)


def test_good_values_still_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "12")
    monkeypatch.setenv("LEASE_SECONDS", "4.5")
    s = load_settings(env_file=None)
    assert s.worker_concurrency == 12 and s.lease_seconds == 4.5
