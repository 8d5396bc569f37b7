"""Which asyncio event loop the server runs on (RUNLOG_LOOP): uvloop, when installed, by default.

uvloop (libuv, in C) runs the same asyncio programs with less CPU per socket read, write, timer
and callback than the standard library's selector loop; the appliance serves HTTP, the worker
link and the primary on it. `asyncio` forces the standard loop (for a platform uvloop does not
support, or to rule the loop out when chasing a problem).
"""

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

LOOPS = ("auto", "asyncio", "uvloop")
T = TypeVar("T")


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolved(name: str) -> str:
    """"asyncio" or "uvloop" for a RUNLOG_LOOP value ("auto": uvloop when installed)."""
    if name == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    if name not in LOOPS:
        raise ValueError(f"unknown event loop {name!r}; expected one of {', '.join(LOOPS)}")
    return name


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if resolved(name) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """`asyncio.run(main)` on the loop `name` names."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
