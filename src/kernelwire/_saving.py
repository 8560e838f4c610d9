"""Notebook files written whole or not at all, and kept up to date while a notebook runs.

A file is written to a temporary name beside it, then renamed over it
(``os.replace``): a reader, or a run killed mid-write, sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("kernelwire.notebook")

SAVE_INTERVAL = 0.1
"""The shortest time between two saves of a running notebook, in seconds."""
SAVE_SHARE = 0.1
"""The largest share of the time a running notebook's saves may take."""


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it.

    The temporary file is made with the mode a plain ``open`` would give (``0o666``
    less the umask), so the result's permissions are those of a file written directly.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def snapshot(nb: Any) -> bytes:
    """``nb`` as notebook JSON, fast: orjson takes about 0.1 ms for 200 small cells,
    where nbformat's writer (which validates) takes about 60 ms. Values JSON does not
    know are written as their text."""
    try:
        return orjson.dumps(nb, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    except orjson.JSONEncodeError:  # e.g. an int past 64 bits in metadata
        text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False, default=str)
        return f"{text}\n".encode()


class Autosave:
    """Keeps a running notebook's file up to date, so that a run killed mid-way leaves
    the cells done so far on disk.

    The run calls :meth:`changed` after each cell; a thread of this object writes the
    notebook soon after, through :func:`write_atomic`. The thread takes :attr:`lock`
    while it turns the notebook into JSON, and the run holds the same lock whenever it
    changes the notebook, so every file written is the notebook between two changes.

    Why a thread and a pace, not a write after every cell: writing is cheap (0.1 ms of
    JSON and a rename for 200 small cells), but it grows with the notebook, and a
    notebook of large outputs written after each of many quick cells would spend its
    time writing. So a save comes at most every :data:`SAVE_INTERVAL` (0.1 s), and
    never sooner after the previous one than nine times that one's duration (saves take
    at most :data:`SAVE_SHARE`, a tenth, of the time). The file lags a cell by at most
    that pace, whatever the next cell does: a cell that ends after a long run is saved
    at once, and the quick cells before a cell that sleeps are saved while it sleeps.
    Failing saves are logged once and the run goes on (the final write reports them).
    """

    def __init__(self, nb: Any, path: str | os.PathLike[str]) -> None:
        self.nb = nb
        self.path = Path(path)
        self.lock = threading.Lock()
        """Held while the notebook is read for a save; hold it to change the notebook."""
        self._wake = threading.Condition()
        self._dirty = False
        self._closed = False
        self._failed = False
        self._next = 0.0  # the monotonic time before which no save starts
        self._thread = threading.Thread(
            target=self._run, name=f"kernelwire-autosave-{self.path.name}", daemon=True
        )
        self._thread.start()

    def changed(self) -> None:
        """The notebook changed (a cell ended): save it soon."""
        with self._wake:
            self._dirty = True
            self._wake.notify()

    def close(self) -> None:
        """Stop the thread and save the notebook as it is now (the run's last changes,
        such as its widget state, come after its last cell)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self._save()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed:
                    if not self._dirty:
                        self._wake.wait()
                    elif (wait := self._next - time.monotonic()) > 0:
                        self._wake.wait(wait)
                    else:
                        break
                else:
                    return
            self._save()

    def _save(self) -> None:
        started = time.monotonic()
        with self.lock:
            with self._wake:
                self._dirty = False
            data = snapshot(self.nb)
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot save %s while it runs: %s", self.path, exc.strerror or exc)
            self._failed = True
        took = time.monotonic() - started
        self._next = time.monotonic() + max(SAVE_INTERVAL, took * (1 - SAVE_SHARE) / SAVE_SHARE)
