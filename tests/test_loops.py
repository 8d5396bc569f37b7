"""appliance.loops: RUNLOG_LOOP's names resolve to a loop, and `run` runs on that loop."""

import asyncio

import pytest

from appliance import loops


def _running_loop_type(name: str) -> str:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    return loops.run(which(), name)


def test_auto_means_uvloop_when_installed(monkeypatch):
    assert loops.resolved("auto") == "uvloop"  # a runtime dependency: installed here
    monkeypatch.setattr(loops, "uvloop_installed", lambda: False)
    assert loops.resolved("auto") == "asyncio"
    assert loops.resolved("asyncio") == "asyncio" and loops.resolved("uvloop") == "uvloop"


def test_run_runs_on_the_named_loop():
    assert _running_loop_type("uvloop").startswith("uvloop")
    assert _running_loop_type("auto").startswith("uvloop")
    assert _running_loop_type("asyncio").startswith("asyncio")


def test_run_returns_the_result_and_raises_the_error():
    async def fails() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        loops.run(fails(), "uvloop")


def test_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        loops.resolved("trio")
