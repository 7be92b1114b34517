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


@pytest.mark.parametrize("name", INTEGERS)
@pytest.mark.parametrize("bad", ["abc", "1.5", "12 workers"])
def test_an_integer_setting_refuses_what_is_not_an_integer(
    monkeypatch: pytest.MonkeyPatch, name: str, bad: str
) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(SettingsError, match=f"^{name} must be an integer, not {bad!r}$"):
        load_settings(env_file=None)


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("bad", ["abc", "nan", "inf", "1,5"])
def test_a_number_setting_refuses_what_is_not_a_finite_number(
    monkeypatch: pytest.MonkeyPatch, name: str, bad: str
) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(SettingsError, match=f"^{name} must be a number, not {bad!r}$"):
        load_settings(env_file=None)


def test_good_values_still_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "12")
    monkeypatch.setenv("LEASE_SECONDS", "4.5")
    s = load_settings(env_file=None)
    assert s.worker_concurrency == 12 and s.lease_seconds == 4.5
