"""What the blocking and asyncio per-request handles share: state, the waiting
algorithms (as steps, see :mod:`kernelwire.client._steps`), cleanup."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from ..errors import KernelTimeout
from ..protocol.message import Channel, Message
from ._engine import AsyncEngine, BlockingEngine
from ._steps import Settle, Steps, Wait, time_left
from .routing import IDLE_GRACE, RequestState

EngineT = TypeVar("EngineT", BlockingEngine, AsyncEngine)
Event = tuple[Channel, Message]
Hook = Callable[[Message], Any]


def forget_request(engine: BlockingEngine | AsyncEngine, msg_id: str) -> None:
    """Stop routing ``msg_id`` on ``engine`` (its later messages become unclaimed)."""
    if not engine.closed:
        engine.run_locked(lambda: engine.router.forget(msg_id))


class PendingBase(Generic[EngineT]):
    """A sent request and the routing state that collects what comes back for it."""

    def __init__(self, engine: EngineT, msg: Message, state: RequestState) -> None:
        self.msg = msg
        self.msg_id: str = msg["msg_id"]
        self._state = state
        self._engine: EngineT = engine
        self._finalizer: weakref.finalize[Any, Any] = weakref.finalize(
            self, forget_request, engine, self.msg_id
        )

    @property
    def incomplete(self) -> bool:
        """True if the IOPub ``idle`` never came (its output may be incomplete)."""
        return self._state.incomplete

    @property
    def done(self) -> bool:
        """Reply and ``idle`` received, and every message taken."""
        return self._state.done and not self._state.events

    def _reply_ready(self) -> Callable[[], Message | None]:
        state, router = self._state, self._engine.router

        def ready() -> Message | None:
            if state.reply is None:
                state.raise_if_failed()
                router.check_alive()
            return state.reply

        return ready

    def _next_event(self) -> Callable[[], Event | Literal[False] | None]:
        """A predicate: the next event, ``False`` once done, ``None`` to keep waiting."""
        state, router = self._state, self._engine.router

        def next_event() -> Event | Literal[False] | None:
            if state.events:
                return state.events.popleft()
            if state.done:
                return False
            state.raise_if_failed()
            if state.give_up_on_idle(IDLE_GRACE):
                return False
            router.check_alive()
            return None

        return next_event

    def _next(self, left: Callable[[], float | None]) -> Steps[Event | None]:
        """The next event, or ``None`` once done (routing then stops)."""
        event: Event | Literal[False] = yield Wait(self._next_event(), left())
        if event is False:
            self.close()
            return None
        return event

    def _reply_steps(self, timeout: float | None) -> Steps[Message]:
        reply: Message = yield Wait(self._reply_ready(), timeout)
        return reply

    def _wait_steps(
        self, timeout: float | None, output_hook: Hook | None, stdin_hook: Hook | None
    ) -> Steps[Message]:
        left = time_left(timeout)
        while (event := (yield from self._next(left))) is not None:
            channel, msg = event
            hook = output_hook if channel == "iopub" else stdin_hook if channel == "stdin" else None
            if hook is not None:
                yield Settle(hook(msg))
        return self._final_reply()

    def _final_reply(self) -> Message:
        reply = self._state.reply
        if reply is None:  # a request with no reply (comm_msg) ends at idle
            self._state.raise_if_failed()
            raise KernelTimeout(f"{self._state.msg_type} has no reply")
        return reply

    def close(self) -> None:
        """Stop routing this request's messages here; later ones become unclaimed."""
        self._finalizer()

    def discard(self) -> None:
        """Close, dropping what arrived and was not taken (it was handed over already)."""
        self._state.events.clear()
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.msg_type} {self.msg_id} done={self.done}>"
