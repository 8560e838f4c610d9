"""``execute_many(servers=[...])``: a notebook batch spread over several Jupyter Servers
or gateways, and moved off a server that stops answering.

Each notebook's kernel starts on the next server in turn (round robin over the servers
still answering), so the batch's ``jobs`` lanes share the servers evenly. When a
notebook's run fails for a reason that may not be its own (anything but a cell's error,
bad parameters, an unknown kernel or a refused environment), its server is asked whether
it still answers (``GET api/kernelspecs``, within :data:`PROBE_TIMEOUT` seconds). A
server that does not is *lost*: it is given no more work, and every notebook that failed
on it runs again from the start, once, on another server. A server that answers keeps
its notebooks' errors: a kernel that died on a live server is the notebook's failure.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import (
    ExecutionError,
    KernelEnvError,
    KernelwireError,
    NoSuchKernel,
    NotebookError,
    ParameterError,
    ServerConnectionError,
    ServerError,
    ServerLost,
)

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from .notebook import NotebookRun
    from .remote import JupyterServer

log = logging.getLogger("kernelwire.notebook")

PROBE_TIMEOUT = 10.0
"""Seconds a server gets to answer, after a notebook failed on it, before it counts as lost."""

NOT_THE_SERVERS = (ExecutionError, ParameterError, NotebookError, KernelEnvError, NoSuchKernel)
"""Failures that are the notebook's own whatever the server's state: never moved."""


class ServerSpread:
    """Which server each notebook of a batch runs on, which servers are lost, and
    whether a notebook that failed runs again elsewhere.

    ``runs`` are the batch's notebooks; those at ``runnable`` are kept as given, so that
    one moved to another server starts there from its unexecuted cells.
    """

    def __init__(
        self, servers: Sequence[JupyterServer], runs: list[NotebookRun], runnable: list[int]
    ) -> None:
        self.servers = list(servers)
        self.runs = runs
        self._given: dict[int, NotebookNode] = {}
        for index in runnable:
            given = runs[index].notebook
            if given is not None:
                self._given[index] = copy.deepcopy(given)
        self._lock = threading.Lock()
        self._turn = 0
        self._lost: dict[str, KernelwireError] = {}  # by URL: why it counts as lost
        self._on: dict[int, JupyterServer] = {}  # by notebook: its latest attempt's server

    def next_server(self, index: int) -> JupyterServer:
        """The server notebook ``index``'s kernel starts on: the next one in turn that is
        not lost (recorded in its run's ``server``); :class:`ServerLost` if none is left."""
        with self._lock:
            live = [s for s in self.servers if s.transport.url not in self._lost]
            if not live:
                lost = ", ".join(f"{url} ({why})" for url, why in self._lost.items())
                raise ServerLost(
                    f"{self._label(index)}: no server left to run it on; every one stopped "
                    f"answering: {lost}",
                    url=list(self._lost)[-1],
                )
            server = live[self._turn % len(live)]
            self._turn += 1
            self._on[index] = server
        self.runs[index].server = server.transport.url
        return server

    def run_again(self, index: int) -> bool:
        """After notebook ``index``'s attempt: whether it runs again on another server.

        Yes when it failed, not for a reason of its own, on a server now lost, and it was
        not moved before: the run is then reset (the notebook as given, no error;
        ``retried_from`` and ``retry_cause`` say why). A notebook that cannot move keeps
        its error, as :class:`ServerLost` when its server was lost.
        """
        run = self.runs[index]
        error = run.error
        with self._lock:
            server = self._on.get(index)
        if isinstance(error, ServerLost):  # no server was left for it: final
            return False
        if error is None or server is None or not self._is_lost(server, error):
            return False
        url = server.transport.url
        label = self._label(index)
        if run.retried_from is not None:
            run.error = ServerLost(
                f"{label}: Jupyter server {url} stopped answering while it ran, after it "
                f"had been moved there from {run.retried_from}: {error}",
                url=url,
            )
            return False
        with self._lock:
            others = [s.transport.url for s in self.servers if s.transport.url not in self._lost]
        if not others:
            run.error = ServerLost(
                f"{label}: Jupyter server {url} stopped answering while it ran, and no "
                f"other server is left to run it on: {error}",
                url=url,
            )
            return False
        log.warning(
            "%s: Jupyter server %s stopped answering while it ran; running it again on %s",
            label,
            url,
            " or ".join(others),
        )
        run.retried_from = url
        run.retry_cause = error
        run.error = None
        run.server = None
        run.notebook = copy.deepcopy(self._given[index])
        return True

    def _is_lost(self, server: JupyterServer, error: KernelwireError) -> bool:
        """Whether ``server``, on which a run just failed with ``error``, is lost (asked
        once; a lost server stays lost for the batch)."""
        url = server.transport.url
        with self._lock:
            if url in self._lost:
                return True
        if isinstance(error, NOT_THE_SERVERS):
            return False
        try:
            server.transport.request("GET", "api/kernelspecs", timeout=PROBE_TIMEOUT)
        except ServerConnectionError as exc:
            with self._lock:
                first = url not in self._lost
                self._lost.setdefault(url, exc)
            if first:
                log.warning("Jupyter server %s stopped answering; it gets no more notebooks", url)
            return True
        except ServerError:
            return False  # it answered, if with an error: it is there
        return False

    def _label(self, index: int) -> str:
        return self.runs[index].source or f"notebook {index}"
