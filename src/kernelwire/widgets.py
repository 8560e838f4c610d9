"""Jupyter widgets while a notebook runs: their state saved, Output widgets' captures kept.

A front end keeps every widget model's state (from ``comm_open`` and ``comm_msg``
messages of the ``jupyter.widget`` target) and saves it in the notebook's metadata as
``application/vnd.jupyter.widget-state+json``, so that the widget views in the outputs
render when the notebook is opened again. An Output widget used as ``with out: ...``
tells the front end (its state's ``msg_id``) to show the outputs of that request in the
widget, not in the cell; the front end then writes the widget's new ``outputs`` back to
the kernel. :class:`WidgetFrontEnd` does both, as nbclient does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .execution import output_from_msg
from .outputs import OutputNode
from .protocol.message import Message

if TYPE_CHECKING:
    from nbformat import NotebookNode

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
"""The key of the widget state in a notebook's ``metadata.widgets``."""

WIDGET_TARGET = "jupyter.widget"
OUTPUT_MODULE = "@jupyter-widgets/output"
OUTPUT_MODEL = "OutputModel"

CAPTURED_TYPES = frozenset({"stream", "display_data", "execute_result", "error", "clear_output"})
"""The IOPub messages an Output widget takes instead of the cell."""

SendState = Callable[[str, dict[str, Any]], object]
"""Sends ``comm_msg`` data on a comm: ``(comm_id, data)``."""


class OutputWidget:
    """The front end's side of one Output widget: the outputs it shows."""

    def __init__(self, comm_id: str, state: dict[str, Any], send: SendState) -> None:
        self.comm_id = comm_id
        self.state = state
        self.outputs: list[OutputNode] = list(state.get("outputs") or [])
        self._send = send
        self._clear_pending = False

    def output(self, msg: Message) -> None:
        """Show one output (a stream joins the stream before it, as a front end shows it)."""
        if self._clear_pending:
            self.outputs = []
            self._clear_pending = False
        output = output_from_msg(msg) if msg["msg_type"] != "stream" else _stream(msg)
        last = self.outputs[-1] if self.outputs else None
        if (
            last is not None
            and last["output_type"] == "stream"
            and output["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            last["text"] += output["text"]
        else:
            self.outputs.append(output)
        self._sync()

    def clear_output(self, msg: Message) -> None:
        """``clear_output``: now, or (``wait``) before the next output."""
        if msg["content"].get("wait"):
            self._clear_pending = True
            return
        self.outputs = []
        self._sync()

    def _sync(self) -> None:
        self.state["outputs"] = self.outputs
        self._send(self.comm_id, {"method": "update", "state": {"outputs": self.outputs}})


def _stream(msg: Message) -> OutputNode:
    content = msg["content"]
    return OutputNode(
        output_type="stream", name=content.get("name", "stdout"), text=content.get("text", "")
    )


class WidgetFrontEnd:
    """Widget models and Output-widget captures of one notebook run.

    Feed it every IOPub message of the run (:meth:`feed` says whether it took the
    message, for an Output widget); :meth:`save` writes the state into the notebook.
    ``send`` sends an Output widget's new outputs back to the kernel.
    """

    def __init__(self, send: SendState) -> None:
        self._send = send
        self.state: dict[str, dict[str, Any]] = {}
        """comm_id -> the model's state, as the kernel last sent it."""
        self.buffers: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        """comm_id -> buffer path -> the buffer, base64-encoded."""
        self._outputs: dict[str, OutputWidget] = {}
        # The request msg_id whose outputs go to a widget -> the widgets capturing them,
        # innermost last (``with out1: with out2: ...``).
        self._captures: dict[str, list[OutputWidget]] = {}
        self._capturing: dict[str, str] = {}  # Output widget comm_id -> msg_id it captures

    def feed(self, msg: Message) -> bool:
        """Take one IOPub message; ``True`` if an Output widget took it from the cell."""
        msg_type = msg["msg_type"]
        if msg_type in ("comm_open", "comm_msg"):
            self._comm(msg)
            return False
        if msg_type not in CAPTURED_TYPES:
            return False
        parent = msg["parent_header"].get("msg_id")
        widgets = self._captures.get(parent) if isinstance(parent, str) else None
        if not widgets:
            return False
        if msg_type == "clear_output":
            widgets[-1].clear_output(msg)
        else:
            widgets[-1].output(msg)
        return True

    def _comm(self, msg: Message) -> None:
        content = msg["content"]
        comm_id = content.get("comm_id")
        data = content.get("data")
        if not isinstance(comm_id, str) or not isinstance(data, dict):
            return
        state = data.get("state")
        if not isinstance(state, dict):
            return  # a custom message, not a state update
        if msg["msg_type"] == "comm_open":
            if content.get("target_name") != WIDGET_TARGET:
                return
            self.state[comm_id] = dict(state)
            if (state.get("_model_module"), state.get("_model_name")) == (
                OUTPUT_MODULE,
                OUTPUT_MODEL,
            ):
                self._outputs[comm_id] = OutputWidget(comm_id, self.state[comm_id], self._send)
        elif comm_id in self.state:
            self.state[comm_id].update(state)
        else:
            return
        self._keep_buffers(comm_id, data, msg)
        widget = self._outputs.get(comm_id)
        if widget is not None and "msg_id" in state:
            self._capture(widget, state["msg_id"])

    def _keep_buffers(self, comm_id: str, data: dict[str, Any], msg: Message) -> None:
        paths = data.get("buffer_paths")
        if not paths or not isinstance(paths, list):
            return
        kept = self.buffers.setdefault(comm_id, {})
        for path, buffer in zip(paths, msg["buffers"], strict=False):
            if isinstance(path, list):
                kept[tuple(path)] = {
                    "data": base64.b64encode(bytes(buffer)).decode("ascii"),
                    "encoding": "base64",
                    "path": path,
                }

    def _capture(self, widget: OutputWidget, msg_id: object) -> None:
        """The widget's ``msg_id`` changed: capture that request's outputs, or stop."""
        previous = self._capturing.pop(widget.comm_id, None)
        if previous is not None:
            stack = self._captures.get(previous, [])
            if widget in stack:
                stack.remove(widget)
            if not stack:
                self._captures.pop(previous, None)
        if isinstance(msg_id, str) and msg_id:
            self._captures.setdefault(msg_id, []).append(widget)
            self._capturing[widget.comm_id] = msg_id

    def save(self, nb: NotebookNode) -> None:
        """Write the widgets' state into ``nb.metadata.widgets`` (left alone if no widget
        was seen, as nbclient leaves it)."""
        if not self.state:
            return
        models: dict[str, Any] = {}
        for comm_id, state in self.state.items():
            if "_model_name" not in state:
                continue
            model: dict[str, Any] = {
                "model_name": state.get("_model_name"),
                "model_module": state.get("_model_module"),
                "model_module_version": state.get("_model_module_version"),
                "state": state,
            }
            buffers = self.buffers.get(comm_id)
            if buffers:
                model["buffers"] = list(buffers.values())
            models[comm_id] = model
        nb.metadata["widgets"] = {
            WIDGET_STATE: {"state": models, "version_major": 2, "version_minor": 0}
        }
