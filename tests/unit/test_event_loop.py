"""EVENT_LOOP: `settings.resolve_event_loop` maps auto | uvloop | asyncio to the loop to run (an
unknown value, or uvloop where it cannot run, is a SettingsError: the CLI's exit code 2), and
`runtime.run_async` runs on the loop it names. The processes on each loop, end to end, are in
tests/integration/test_nodes_llm_crash.py (a worker SIGKILLed mid-stream on each)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

from flowstudio.runtime import run_async
from flowstudio.settings import SettingsError, resolve_event_loop

needs_uvloop = pytest.mark.skipif(
    sys.platform == "win32" or importlib.util.find_spec("uvloop") is None,
    reason="uvloop is not installed here (a dependency except on Windows)",
)


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@needs_uvloop
def test_auto_is_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_LOOP", raising=False)
    assert resolve_event_loop() == "uvloop"
    assert resolve_event_loop(" Auto ") == "uvloop"
    assert run_async(loop_module).startswith("uvloop")


def test_asyncio_runs_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_LOOP", "asyncio")
    assert resolve_event_loop() == "asyncio"
    assert run_async(loop_module).startswith("asyncio")
    assert run_async(loop_module, "asyncio").startswith("asyncio")


def test_auto_without_uvloop_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert resolve_event_loop("auto") == "asyncio"
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        resolve_event_loop("uvloop")


@pytest.mark.parametrize("value", ["bogus", "trio", "uv loop"])
def test_an_unknown_loop_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="EVENT_LOOP must be one of auto, uvloop, asyncio"):
        resolve_event_loop(value)
