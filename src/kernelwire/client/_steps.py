"""Client algorithms written once, as generators of the waits they need.

An algorithm that waits (readiness, a request's events, ``run``/``stream``) is a
generator that yields *steps* and gets their outcome back: :class:`Wait` (until a
predicate holds, or a timeout: the result is sent back, an error thrown in),
:class:`Emit` (a value for the caller of an iterator), :class:`Settle` (the result of
a call on a client: an asyncio client's is awaited). The blocking and asyncio clients
each have one small runner that performs the steps their way; nothing else is mirrored.

>>> def twice(predicate):
...     first = yield Wait(predicate, 1.0)
...     second = yield Wait(predicate, 1.0)
...     return first + second
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Wait:
    """Wait until ``predicate()`` returns non-None (its value is the outcome); a
    :class:`~kernelwire.errors.KernelTimeout` after ``timeout`` seconds is thrown in."""

    predicate: Callable[[], Any]
    timeout: float | None


@dataclass(slots=True)
class Emit:
    """Hand ``value`` to the caller of the iterator being run."""

    value: Any


@dataclass(slots=True)
class Settle:
    """The result of a client call: awaited first when the client is an asyncio one."""

    value: Any


@dataclass(slots=True)
class Done(Generic[T]):
    """The algorithm returned ``value``."""

    value: T


Step = Wait | Emit | Settle
Steps = Generator[Step, Any, T]
Outcome = tuple[Any, Exception | None]
"""What a step came to: a value, or an error to throw into the algorithm."""
NOTHING: Outcome = (None, None)


def advance(steps: Steps[T], value: Any = None, error: Exception | None = None) -> Step | Done[T]:
    """Resume ``steps`` with the outcome of its last step; its next step, or :class:`Done`."""
    try:
        return steps.throw(error) if error is not None else steps.send(value)
    except StopIteration as stop:
        return Done(stop.value)


def time_left(timeout: float | None) -> Callable[[], float | None]:
    """A function giving the seconds left of ``timeout`` from now (``None``: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    return left
