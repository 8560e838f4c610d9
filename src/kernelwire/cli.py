"""The ``kernelwire`` command line.

``kernelwire run [-k KERNEL] -c CODE`` (or ``FILE``, or ``-`` for stdin) starts a
kernel, runs the code, prints its streams, results and errors, and exits 1 if the code
raised. ``kernelwire notebook run IN.ipynb`` executes a notebook with a progress bar.
``kernelwire kernels`` lists kernel specs; ``kernelwire start`` starts a kernel;
``kernelwire console`` is an interactive prompt on one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import string
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from . import __version__
from ._stopping import settle, stop_early
from .client._hooks import print_output, strip_ansi
from .errors import (
    CellExecutionError,
    CellKernelDied,
    ExecutionError,
    KernelDied,
    KernelStartTimeout,
    KernelTimeout,
    KernelwireError,
)
from .existing import ExistingKernel
from .lifecycle.kernel import Kernel, start_kernel
from .lifecycle.launcher import STARTUP_TIMEOUT
from .lifecycle.specs import get_kernel_spec, list_kernel_specs
from .protocol import requests

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from .remote import RemoteKernel

EXIT_OK = 0
"""Every notebook ran (errors allowed by ``--allow-errors`` or tags included)."""
EXIT_FAILED = 1
"""A cell raised, or did not finish within ``--timeout``."""
EXIT_USAGE = 2
"""A usage error, an unreadable notebook, a kernel that could not be started."""
EXIT_KERNEL_DIED = 3
"""The kernel died while a cell ran (the partial notebook is written)."""
# Stopped by a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
DASK_CONNECT_TIMEOUT = "10s"
"""How long ``--dask`` waits for the scheduler to answer."""


def _usage_error(message: str) -> SystemExit:
    """Print ``message`` as one line; the exit a usage error gets."""
    print(f"kernelwire: {message}", file=sys.stderr)
    return SystemExit(EXIT_USAGE)


def _color() -> bool:
    """Whether tracebacks keep their colours: on a terminal, unless ``NO_COLOR``."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


@contextmanager
def _stream_files(args: argparse.Namespace) -> Iterator[dict[str, TextIO]]:
    """The files ``--stdout-file`` and ``--stderr-file`` name, by stream name, open for
    writing (a file that cannot be opened: a usage error, before anything runs)."""
    with contextlib.ExitStack() as stack:
        files: dict[str, TextIO] = {}
        for name, path in (("stdout", args.stdout_file), ("stderr", args.stderr_file)):
            if path is None:
                continue
            if name == "stderr" and path == args.stdout_file:
                files[name] = files["stdout"]  # both streams into one file, in order
                continue
            try:
                files[name] = stack.enter_context(open(path, "w", encoding="utf-8"))
            except OSError as exc:
                raise _usage_error(
                    f"cannot write --{name}-file {path}: {exc.strerror or exc}"
                ) from None
        yield files


def _read_code(args: argparse.Namespace) -> str:
    if args.code is not None:
        return str(args.code)
    if args.file is None and sys.stdin.isatty():  # it would wait, silent, for typing
        raise _usage_error("run: give the code with -c CODE, a FILE, or - to read stdin")
    if args.file in (None, "-"):
        return sys.stdin.read()
    if args.file.endswith(".ipynb"):
        raise _usage_error(f"{args.file} is a notebook: kernelwire notebook run {args.file}")
    try:
        with open(args.file, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise _usage_error(f"cannot read {args.file}: {exc.strerror or exc}") from None


def run_command(args: argparse.Namespace) -> int:
    """``kernelwire run``: run code on a fresh kernel (or, with ``--existing``, on a running
    one, left running); 0 if it succeeded, 1 if it raised."""
    code = _read_code(args)
    show = partial(print_output, color=_color())
    with contextlib.ExitStack() as stack:
        kernel = _chosen_kernel(args, stack)
        client = kernel.client()
        pending = client.submit(requests.execute(code, allow_stdin=False))

        def drain(grace: float) -> None:
            pending.wait(grace, output_hook=show)

        def stop() -> None:
            if isinstance(kernel, ExistingKernel):
                settle(kernel, drain)  # not ours: interrupted, never stopped
            else:
                stop_early(kernel, drain, owned=True)

        try:
            reply = pending.wait(args.timeout, output_hook=show)
        except KernelTimeout:
            stop()
            print(f"kernelwire: the code did not finish within {args.timeout:g} s", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP
            stop()
            raise
        except KernelDied as exc:
            print(f"kernelwire: the kernel died while the code ran: {exc}", file=sys.stderr)
            return EXIT_KERNEL_DIED
    return 0 if reply["content"].get("status") == "ok" else 1


def _chosen_kernel(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> Kernel | RemoteKernel | ExistingKernel:
    """The kernel ``--existing``, ``--server`` and ``-k`` choose, released by ``stack``."""
    if args.existing:
        if args.server or getattr(args, "fork", False):
            other = "--server" if args.server else "--fork"
            raise _usage_error(f"{args.command}: --existing and {other} cannot go together")
        kernel = ExistingKernel(args.existing)
        stack.callback(kernel.close)
        return kernel
    return stack.enter_context(_kernel_for(args))


def console_command(args: argparse.Namespace) -> int:
    """``kernelwire console``: an interactive prompt on a new kernel (shut down when it
    ends), on ``--existing`` (left running) or on ``--server``'s."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise _usage_error("console: needs a terminal (use kernelwire run for piped code)")
    try:
        from .console import Console
    except ImportError as exc:  # the optional extra
        raise _usage_error(
            f"console needs prompt_toolkit: pip install 'kernelwire[console]' ({exc})"
        ) from None
    with contextlib.ExitStack() as stack:
        kernel = _chosen_kernel(args, stack)
        where = args.existing or f"a new {args.kernel} kernel"
        print(f"kernelwire console on {where}; Ctrl-D leaves.", flush=True)
        history = _default_history() if args.history is None else args.history or None
        return Console(kernel, history).run()


def _default_history() -> str:
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "kernelwire", "console_history")


@contextmanager
def _kernel_for(args: argparse.Namespace) -> Iterator[Kernel | RemoteKernel]:
    """A kernel of spec ``args.kernel``: local, or on ``args.server`` when given."""
    fork = getattr(args, "fork", False)  # console has no --fork
    if args.server:
        if fork:
            raise _usage_error("run: --fork starts a local kernel, not with --server")
        from .remote import connect_server  # httpx and websockets: only for a server

        with (
            connect_server(*_server_and_token(args)) as server,
            server.start_kernel(args.kernel) as remote,
        ):
            yield remote
    else:
        with start_kernel(args.kernel, fork=fork) as local:
            yield local


def _timeout(text: str) -> float | None:
    """A time limit in seconds; 0 or less means none, as ``jupyter execute`` reads it."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    return value if value > 0 else None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _skip_iri_grammar() -> None:
    """Keep jsonschema, which nbformat imports, from loading ``rfc3987_syntax``.

    That module builds an IRI grammar when imported: 2 s of the command's start on a
    loaded machine, for jsonschema's ``iri`` format checks, which nbformat's schemas
    never use. Done in this command's own process only, before anything imports
    jsonschema; a library user's process is left alone.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def notebook_run_command(args: argparse.Namespace) -> int:
    """``kernelwire notebook run``: execute notebooks and write the results.

    Several notebooks run one after another (``--jobs`` at once), each on its own
    kernel; the next one's kernel starts while the current one runs. Exit status: 0 if
    every notebook ran, 1 if a cell failed or timed out, 2 if a notebook could not be
    read or its kernel could not be started, 3 if a kernel died while a cell ran; with
    several notebooks, the highest of these.
    """
    with contextlib.ExitStack() as stack:
        return _notebook_run(args, stack)


def _notebook_run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    """``notebook run``, its files (``--stdout-file``, ...) kept open by ``stack``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    _skip_iri_grammar()
    from . import notebook
    from .parameters import add_error_markers, remove_error_markers

    sources = [Path(p) for p in args.notebooks]
    if args.notebooks.count("-") > 1 or ("-" in args.notebooks and len(sources) > 1):
        raise _usage_error("notebook run: - (stdin) is the only notebook when given")
    parameters = _parameters(args)
    # The output's name is filled in from the parameters (the input's path among them
    # when injected, as papermill fills it in), then the output's path is injected.
    targets = _targets(
        args.output, sources, [_with_paths(args, parameters, source) for source in sources]
    )
    prepared = [  # read once, here
        notebook.prepare(notebook.read(sys.stdin) if str(s) == "-" else s) for s in sources
    ]
    for run in prepared:
        if run.error is not None:
            raise run.error  # a missing or broken file is an error before anything runs
    if args.help_notebook:
        return _help_notebooks(prepared, args.kernel)
    for run, source, target in zip(prepared, sources, targets, strict=True):
        run.parameters = _with_paths(args, parameters, source, target)
        assert run.notebook is not None  # read above
        if args.error_markers:  # an earlier run's, as papermill drops them
            remove_error_markers(run.notebook)
    if args.fork and args.server:
        raise _usage_error("notebook run: --fork starts local kernels, not with --server")
    for target in targets:  # before anything runs: a run's results must have a place
        if str(target) != "-" and not target.parent.is_dir():
            print(f"kernelwire: cannot write {target}: no folder {target.parent}", file=sys.stderr)
            return 2
    _check_kernel_options(args)
    if args.report_mode:
        for run in prepared:
            assert run.notebook is not None  # read above
            notebook.hide_inputs(run.notebook)
    if args.prepare_only:
        return _prepare_only(prepared, sources, targets, args)
    for run, target in zip(prepared, targets, strict=True):
        if str(target) != "-":  # kept up to date while it runs: a killed run leaves it
            run.save_to = target
    streams = stack.enter_context(_stream_files(args))
    show = partial(print_output, color=_color(), out=sys.stderr)

    def output_arrived(index: int, msg: Any) -> None:
        if args.log_output:
            show(msg)
        content = msg["content"]
        file = streams.get(content.get("name")) if msg["msg_type"] == "stream" else None
        text = content.get("text")
        if file is not None and isinstance(text, str):
            file.write(text)
            file.flush()  # followed as it runs (tail -f), as papermill's files are

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    from .remote import connect_server

    servers = [
        stack.enter_context(connect_server(*_server_and_token(args, url)))
        for url in args.server or []
    ]
    if args.dask and servers:
        raise _usage_error("notebook run: give --dask or --server, not both")
    quiet = not console.is_terminal or args.log_output  # a bar would cut through the log
    with (
        _dask_executor(args.dask) as executor,
        Progress(*columns, console=console, disable=quiet) as progress,
    ):
        # A notebook's hooks all come on one thread; with --jobs, notebooks run on several.
        current = threading.local()
        tasks: dict[int, Any] = {}

        def notebook_started(index: int, run: notebook.NotebookRun) -> None:
            cells = notebook.cells_to_run(run.notebook, args.skip_tag) if run.notebook else []
            current.name = sources[index].name
            if index in tasks:  # run again, on another server: its bar starts over
                current.task = tasks[index]
                progress.reset(current.task, total=len(cells), description=current.name)
            else:
                current.task = tasks[index] = progress.add_task(current.name, total=len(cells))

        def cell_started(index: int, cell: Any) -> None:
            first_line = (cell.source.strip().splitlines() or [""])[0][:40]
            progress.update(current.task, description=f"{current.name} cell {index}: {first_line}")
            if args.log_output:
                print(f"--- {current.name}: cell index {index} ---", file=sys.stderr, flush=True)

        def cell_done(index: int, cell: Any) -> None:
            progress.advance(current.task)

        def notebook_done(index: int, run: notebook.NotebookRun) -> None:
            outcome = "done" if run.ok else "failed"
            # Its own bar: on an executor every notebook's hooks come on this thread,
            # and the last one started may be another notebook.
            progress.update(tasks[index], description=f"{sources[index].name}: {outcome}")

        runs = notebook.execute_many(
            prepared,
            kernel_name=args.kernel,
            server=servers[0] if len(servers) == 1 else None,
            servers=servers if len(servers) > 1 else None,
            kernel_env=dict(args.env) if args.env else None,
            launch_timeout=args.launch_timeout,
            timeout=args.timeout,
            allow_errors=args.allow_errors,
            jobs=args.jobs,
            max_output_chars=args.max_output,
            on_notebook_start=notebook_started,
            on_notebook_done=notebook_done,
            on_cell_start=cell_started,
            on_cell_done=cell_done,
            on_output=output_arrived if args.log_output or streams else None,
            parameters=parameters,
            executor=executor,
            fork=args.fork,
            cwd=args.cwd,
            skip_tag=args.skip_tag,
            startup_timeout=args.start_timeout,
        )
    status = 0
    # The summary goes to stderr when the notebook itself goes to stdout.
    out = sys.stderr if "-" in map(str, targets) else sys.stdout
    for source, run, target in zip(sources, runs, targets, strict=True):
        failure = run.error
        prefix = f"{source}: " if len(sources) > 1 else ""
        if isinstance(failure, KernelStartTimeout):  # its kernel's stderr follows: not shown
            first = str(failure).splitlines()[0]
            print(f"kernelwire: {prefix}{first}; allow more with --start-timeout", file=sys.stderr)
            status = max(status, EXIT_USAGE)
            continue
        if failure is not None and not isinstance(
            failure, (CellExecutionError, KernelTimeout, CellKernelDied)
        ):
            print(f"kernelwire: {prefix}{failure}", file=sys.stderr)
            status = max(status, EXIT_USAGE)
            continue
        assert run.notebook is not None  # read above
        if run.parameters is not None:  # where papermill records it
            run.notebook.metadata.papermill["output_path"] = str(target)
        if args.report_mode:  # the injected cell too
            notebook.hide_inputs(run.notebook)
        if isinstance(failure, CellExecutionError) and args.error_markers:
            add_error_markers(run.notebook, failure.cell_index)
        _write(run.notebook, target)
        if failure is not None:
            if isinstance(failure, ExecutionError):
                print("\n".join(strip_ansi(line) for line in failure.traceback), file=sys.stderr)
            print(
                f"kernelwire: {source}: {failure} (partial notebook written to "
                f"{'stdout' if str(target) == '-' else target})",
                file=sys.stderr,
            )
            died = isinstance(failure, CellKernelDied)
            status = max(status, EXIT_KERNEL_DIED if died else EXIT_FAILED)
            continue
        ran = notebook.cells_to_run(run.notebook, args.skip_tag)
        line = _summary(run.notebook, source, target, ran)
        if run.retried_from is not None:
            line += f" (ran on {run.server}: {run.retried_from} stopped answering)"
        print(line, file=out)
    return status


def _check_kernel_options(args: argparse.Namespace) -> None:
    """``--cwd`` must be a folder (with ``--server``: one on the server, relative to its
    root); ``--start-timeout`` is for local kernels."""
    if args.server and args.start_timeout != STARTUP_TIMEOUT:
        raise _usage_error("notebook run: --start-timeout is for local kernels")
    if not args.server:
        given = [option for option in ("env", "launch_timeout") if getattr(args, option)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise _usage_error(
                f"notebook run: {flag} is for kernels started on a --server (local kernels "
                "get this process's environment and --start-timeout)"
            )
    if args.cwd is not None and not args.server:
        if not os.path.isdir(args.cwd):
            raise _usage_error(f"notebook run: --cwd {args.cwd}: no such folder")
        args.cwd = os.path.abspath(args.cwd)


def _prepare_only(
    runs: list[Any], sources: list[Path], targets: list[Path], args: argparse.Namespace
) -> int:
    """``--prepare-only``: the notebooks with their parameters injected (and papermill's
    paths recorded, as papermill's ``prepare_only`` leaves them), written unexecuted."""
    from . import parameters as papermill_way
    from .notebook import hide_inputs

    out = sys.stderr if "-" in map(str, targets) else sys.stdout
    for run, source, target in zip(runs, sources, targets, strict=True):
        if run.parameters is not None:
            try:
                papermill_way.inject(run.notebook, run.parameters, args.kernel)
            except KernelwireError as exc:
                raise _usage_error(f"{source}: {exc}") from None
            section = papermill_way.papermill_metadata(run.notebook)
            section["input_path"], section["output_path"] = str(source), str(target)
        if args.report_mode:  # the injected cell too
            hide_inputs(run.notebook)
        _write(run.notebook, target)
        where = "stdout" if str(target) == "-" else target
        print(f"Prepared {source} without running it; wrote {where}", file=out)
    return EXIT_OK


def _parameters(args: argparse.Namespace) -> dict[str, Any] | None:
    """The parameters given, merged as papermill merges them (whatever their order on
    the command line): ``-b``, then ``-f``, then ``-y``, then ``-p``, then ``-r``, a later
    one replacing an earlier value; ``None`` when none was given."""
    from . import parameters as papermill_way

    given = (args.parameters_base64, args.parameters_file, args.parameters_yaml)
    if not any(given) and not args.parameters and not args.parameters_raw:
        return None
    merged: dict[str, Any] = {}
    for text in args.parameters_base64:
        merged.update(papermill_way.from_base64(text))
    for path in args.parameters_file:
        merged.update(papermill_way.from_yaml_file(path))
    for text in args.parameters_yaml:
        merged.update(papermill_way.from_yaml(text, "-y"))
    merged.update((name, papermill_way.parse_value(value)) for name, value in args.parameters)
    merged.update(args.parameters_raw)
    return merged


INPUT_PATH_PARAMETER = "PAPERMILL_INPUT_PATH"
OUTPUT_PATH_PARAMETER = "PAPERMILL_OUTPUT_PATH"
"""The parameters ``--inject-paths`` sets, named as papermill names them."""


def _with_paths(
    args: argparse.Namespace,
    parameters: dict[str, Any] | None,
    source: Path,
    target: Path | None = None,
) -> dict[str, Any] | None:
    """A notebook's parameters: the paths ``--inject-input-path``, ``--inject-output-path``
    and ``--inject-paths`` ask for (the output's once ``target`` is known), then the
    parameters given, which may replace them (papermill's order)."""
    paths: dict[str, Any] = {}
    if args.inject_input_path or args.inject_paths:
        paths[INPUT_PATH_PARAMETER] = str(source)
    if target is not None and (args.inject_output_path or args.inject_paths):
        paths[OUTPUT_PATH_PARAMETER] = str(target)
    if not paths:
        return parameters
    return {**paths, **(parameters or {})}


def _help_notebooks(runs: list[Any], kernel_name: str | None) -> int:
    """``--help-notebook``: each notebook's parameters, read from its ``parameters``
    cell (no kernel started); 1 if a notebook has no such cell, as papermill exits."""
    from . import parameters as papermill_way

    status = 0
    for run in runs:
        where = run.source or "<stdin>"
        found = papermill_way.inspect(run.notebook, kernel_name)
        if papermill_way.parameters_cell(run.notebook) is None:
            print(f"{where}: no cell tagged 'parameters'")
            status = 1
            continue
        if not found:
            why = "its language's cells cannot be read" if found is None else "it assigns none"
            print(f"{where}: no parameters found in the cell tagged 'parameters' ({why})")
            continue
        print(f"Parameters of {where} (override with -p NAME VALUE):")
        width = max(len(p.name) for p in found)
        for p in found:
            kind = "unknown type" if p.inferred_type_name == "None" else p.inferred_type_name
            line = f"  {p.name:<{width}}  {kind} = {p.default}"
            print(f"{line}  # {p.help}" if p.help else line)
    return status


def _write(nb: Any, target: Path) -> None:
    """Write an executed notebook to ``target`` (``-``: stdout)."""
    import nbformat

    from . import notebook

    if str(target) == "-":
        nbformat.write(nb, sys.stdout)  # type: ignore[no-untyped-call]
        sys.stdout.flush()
    else:
        notebook.write(nb, target)


def _summary(nb: Any, source: Path, target: Path, ran: list[int]) -> str:
    """One line on a notebook that ran to its end, with the cells that raised (allowed)."""
    raised = sum(
        1 for i in ran if any(o.get("output_type") == "error" for o in nb.cells[i].outputs)
    )
    line = f"Executed {_count(len(ran), 'code cell')} of {source}"
    if raised:
        line += f" ({_count(raised, 'cell')} raised, allowed)"
    return line + f"; wrote {'stdout' if str(target) == '-' else target}"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _targets(
    output: str | None, sources: list[Path], parameters: list[dict[str, Any] | None]
) -> list[Path]:
    """Where each notebook goes: ``-o``'s file (one notebook), ``-`` (stdout, one
    notebook), a name with ``{...}`` placeholders (see :func:`_fill_in`), an existing
    folder (each under its own name), or, with no ``-o``, beside its source. Usage
    errors: two notebooks written to one file, a placeholder with nothing to fill it,
    or a folder that would overwrite its input."""
    if not output:
        return [_default_target(s) for s in sources]
    if "{" in output:
        targets = [
            Path(_fill_in(output, source, given))
            for source, given in zip(sources, parameters, strict=True)
        ]
    elif output != "-" and os.path.isdir(output):
        targets = [Path(output) / f"{_stem(s)}.ipynb" for s in sources]
        for source, target in zip(sources, targets, strict=True):
            if str(source) != "-" and target.resolve() == source.resolve():
                raise _usage_error(f"-o {output} would overwrite {source}; give another folder")
    elif len(sources) > 1:
        raise _usage_error(
            "-o/--output takes one notebook; for several give a folder or a name "
            "with {notebook_name}"
        )
    else:
        targets = [Path(output)]
    seen: dict[Path, Path] = {}
    for source, target in zip(sources, targets, strict=True):
        other = seen.setdefault(target.resolve(), source)
        if other is not source:
            raise _usage_error(f"{other} and {source} would both be written to {target}")
    return targets


def _fill_in(output: str, source: Path, parameters: dict[str, Any] | None) -> str:
    """``-o``'s name with its placeholders filled in, as papermill fills in an output
    path: from the parameters (``{alpha}``, ``{opts[key]}``, with format specs) and
    papermill's built-ins (``{pm[run_uuid]}``, ``{pm[current_datetime_utc]:%Y%m%d}``,
    ``{pm[current_datetime_local]}``), plus kernelwire's ``{notebook_name}`` (the
    source's name without ``.ipynb``, as nbconvert fills it in). A placeholder with
    nothing to fill it is a usage error naming it."""
    import uuid
    from datetime import datetime, timezone

    builtins = {
        "run_uuid": str(uuid.uuid4()),
        "current_datetime_local": datetime.now(),
        "current_datetime_utc": datetime.now(timezone.utc),
    }
    values = {"pm": builtins, **(parameters or {}), "notebook_name": _stem(source)}
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(output) if field is not None]
        for field in fields:
            name = re.split(r"[.\[]", field, maxsplit=1)[0]
            if not name or name.isdigit():
                raise _usage_error(
                    f"-o {output}: a placeholder without a name ({{{field}}}); name a parameter"
                )
            if name not in values:
                raise _usage_error(
                    f"-o {output}: no parameter {name!r} to fill in {{{field}}} (give -p "
                    f"{name} VALUE; {{notebook_name}} and {{pm[...]}} are filled in too)"
                )
        return output.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        detail = f"no item {exc}" if isinstance(exc, (KeyError, IndexError)) else str(exc)
        raise _usage_error(f"-o {output}: cannot fill in its placeholders: {detail}") from None


def _stem(source: Path) -> str:
    """A notebook's name without ``.ipynb`` (``stdin`` for ``-``)."""
    return "stdin" if str(source) == "-" else source.name.removesuffix(".ipynb")


def _default_target(source: Path) -> Path:
    """Where an executed notebook goes without ``--output``: beside its source (to
    stdout for a notebook read from stdin)."""
    return source if str(source) == "-" else source.with_suffix(".executed.ipynb")


def kernels_command(args: argparse.Namespace) -> int:
    """``kernelwire kernels``: list installed kernel specs (a server's with ``--server``)."""
    if args.server:
        return _server_kernels(args)
    specs = list_kernel_specs()
    if args.json:
        print(
            orjson.dumps(
                {n: s.to_dict() for n, s in specs.items()}, option=orjson.OPT_INDENT_2
            ).decode()
        )
        return 0
    width = max((len(name) for name in specs), default=4)
    for name, spec in sorted(specs.items()):
        print(f"{name:<{width}}  {spec.display_name}  ({spec.language}, {spec.resource_dir})")
    return 0


def _server_kernels(args: argparse.Namespace) -> int:
    """``kernelwire kernels --server URL``: the server's kernel specs."""
    from .remote import connect_server

    with connect_server(*_server_and_token(args)) as server:
        if args.json:
            print(orjson.dumps(server.kernel_specs(), option=orjson.OPT_INDENT_2).decode())
            return 0
        summaries = server.kernel_spec_summaries()
    width = max((len(name) for name in summaries), default=4)
    for name, (display_name, language) in sorted(summaries.items()):
        print(f"{name:<{width}}  {display_name}  ({language or '?'})")
    return 0


def _start_on_server(args: argparse.Namespace) -> int:
    """``kernelwire start --server URL``: a kernel on the server, deleted on Ctrl-C."""
    from .remote import connect_server

    url, token = _server_and_token(args)
    with connect_server(url, token) as server, server.start_kernel(args.kernel) as kernel:
        try:
            print(f"Started kernel {args.kernel} on {url}: id {kernel.kernel_id}", flush=True)
            print(f"Connect with: connect_server({url!r}).kernel({kernel.kernel_id!r})", flush=True)
            print("Press Ctrl-C to shut it down.", flush=True)
            while kernel.is_alive():
                time.sleep(1.0)
            print("kernelwire: the server no longer has the kernel", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("Shutting down the kernel.", flush=True)
            return 0


def start_command(args: argparse.Namespace) -> int:
    """``kernelwire start``: start a kernel and keep it running until Ctrl-C.

    The kernel is meant for other tools (``jupyter console --existing``, qtconsole),
    which do not pass a connection file's CurveZMQ keys on: it gets Curve only with
    ``--encrypt``. With ``--server``, the kernel runs on that Jupyter Server.
    """
    if args.server:
        if args.connection_file or args.encrypt:
            raise _usage_error("start: --connection-file and --encrypt are for local kernels")
        return _start_on_server(args)
    kernel = Kernel(get_kernel_spec(args.kernel), encrypt=args.encrypt)
    if args.connection_file:
        kernel.connection_file = os.path.abspath(args.connection_file)
    try:
        kernel.start()
        print(f"Started kernel {args.kernel} (pid {kernel.pid}).", flush=True)
        print(f"Connect with: --existing {kernel.connection_file}", flush=True)
        print(f"  BlockingKernelClient({kernel.connection_file!r})", flush=True)
        print("Press Ctrl-C to shut it down.", flush=True)
        while kernel.is_alive():
            time.sleep(0.5)
        print(f"kernelwire: the kernel exited with code {kernel.exit_code}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Shutting down the kernel.", flush=True)
        return 0
    finally:
        kernel.shutdown()


def mcp_command(args: argparse.Namespace) -> int:
    """``kernelwire mcp``: a Model Context Protocol server for AI agents (stdio, or
    streamable HTTP with ``--http``); its kernels are shut down when it stops."""
    try:
        from .mcp_server import serve
    except ImportError as exc:  # the optional extra
        raise _usage_error(
            f"mcp needs the MCP SDK: pip install 'kernelwire[mcp]' ({exc})"
        ) from None
    server = None
    if args.server:
        if args.existing:
            raise _usage_error("mcp: --existing and --server cannot go together")
        from .remote import connect_server

        server = connect_server(*_server_and_token(args))
    try:
        serve(args.http, server=server, existing=args.existing)
    finally:
        if server is not None:
            server.close()
    return 0


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT``, e.g. ``127.0.0.1:8765``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8765, got {text!r}")
    return host.strip("[]"), int(port)


def _server_and_token(
    args: argparse.Namespace, server: str | None = None
) -> tuple[str, str | None]:
    """The server's URL and token: ``--token``, else the ``?token=`` of the URL a
    Jupyter Server prints (taken off the URL), else ``$JUPYTER_TOKEN``. ``server`` is
    one of several ``--server`` URLs (default: the one ``--server``)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(args.server if server is None else server)
    query = parse_qsl(parts.query)
    in_url = next((value for key, value in query if key == "token"), None)
    rest = urlencode([(key, value) for key, value in query if key != "token"])
    url = urlunsplit(parts._replace(query=rest))
    return url, args.token or in_url or os.environ.get("JUPYTER_TOKEN")


def _server_url(text: str) -> str:
    """A server's URL: http or https, with a host."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"expected a URL such as http://localhost:8888, got {text!r}"
        )
    return text


@contextlib.contextmanager
def _dask_executor(address: str | None) -> Iterator[Executor | None]:
    """The executor of a Dask client connected to ``address`` (``None``: no Dask)."""
    if address is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise _usage_error(
            "--dask needs Dask's distributed package: pip install 'kernelwire[dask]'"
        ) from None
    client_class: Any = distributed.Client  # distributed is not typed
    try:
        client = client_class(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, ValueError) as exc:
        raise _usage_error(f"--dask {address}: cannot reach the scheduler: {exc}") from None
    with client:
        yield client.get_executor()


def _server_options(
    parser: argparse.ArgumentParser,
    what: str = "run on this Jupyter Server or Gateway URL instead",
    *,
    repeatable: bool = False,
) -> None:
    if repeatable:
        parser.add_argument("--server", type=_server_url, action="append", metavar="URL", help=what)
    else:
        parser.add_argument("--server", type=_server_url, help=what)
    parser.add_argument("--token", help="the server's token (default: $JUPYTER_TOKEN)")


def _env_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE``: one variable of a remote kernel's environment."""
    key, equals, value = text.partition("=")
    if not equals or not key or key != key.strip():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE (e.g. KERNEL_USERNAME=ada), got {text!r}"
        )
    return key, value


def _remote_start_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "kernels on a --server (an Enterprise Gateway's KERNEL_ variables, slow launches)"
    )
    group.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        metavar="KEY=VALUE",
        help="a variable of each kernel's environment, sent with its start (may be "
        "repeated); a gateway passes on only KERNEL_ names (e.g. KERNEL_USERNAME)",
    )
    group.add_argument(
        "--launch-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long a kernel's launch on the server may take (sent to a gateway as "
        "KERNEL_LAUNCH_TIMEOUT; default: the server's own)",
    )


def _log_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output as it arrives (papermill's options)")
    group.add_argument(
        "--log-output",
        action="store_true",
        help="show the cells' outputs on stderr as they arrive, also when piped "
        "(instead of the progress bar)",
    )
    group.add_argument(
        "--stdout-file", metavar="FILE", help="write the cells' stdout streams to FILE"
    )
    group.add_argument(
        "--stderr-file", metavar="FILE", help="write the cells' stderr streams to FILE"
    )


def _seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _tag(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a tag, got nothing")
    return text


def _papermill_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("how it runs (papermill's and nbclient's options)")
    group.add_argument(
        "--cwd",
        metavar="DIR",
        help="the kernel's working directory (default: each notebook's folder; with "
        "--server, a folder on the server, relative to its root: default the root)",
    )
    group.add_argument(
        "--start-timeout",
        type=_seconds,
        default=STARTUP_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a kernel may take to start (default: {STARTUP_TIMEOUT:g})",
    )
    group.add_argument(
        "--prepare-only",
        action="store_true",
        help="inject the parameters and write the notebook without running it",
    )
    group.add_argument(
        "--report-mode",
        action="store_true",
        help="hide the code cells' input in the output (metadata jupyter.source_hidden)",
    )
    group.add_argument(
        "--error-markers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="when a cell's error stops a notebook, add papermill's marker cells to the "
        "written notebook (a link at the top, an anchor before the cell), and drop an "
        "earlier run's markers before running (default: on, as papermill)",
    )
    group.add_argument(
        "--skip-tag",
        type=_tag,
        default="skip-execution",
        metavar="TAG",
        help="cells with this tag are not run (default: skip-execution, as nbclient's "
        "skip_cells_with_tag)",
    )


def _parameter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "parameters (papermill's options: injected after the cell tagged 'parameters')"
    )
    # papermill's short options and what they take; each may be given several times.
    options: list[tuple[str, str, str | tuple[str, str], str]] = [
        ("-p", "--parameters", ("NAME", "VALUE"), "a parameter; VALUE is read as True, "
         "False, None, an int or float, else a string"),
        ("-r", "--parameters-raw", ("NAME", "VALUE"), "a parameter whose VALUE is a string"),
        ("-y", "--parameters-yaml", "YAML", "parameters as a YAML mapping"),
        ("-f", "--parameters-file", "FILE", "parameters from a YAML (or JSON) file"),
        ("-b", "--parameters-base64", "BASE64", "parameters as base64-encoded YAML"),
    ]  # fmt: skip
    for short, long, metavar, text in options:
        group.add_argument(
            short,
            long,
            nargs=2 if isinstance(metavar, tuple) else None,
            action="append",
            default=[],
            metavar=metavar,
            help=text,
        )
    group.add_argument(
        "--inject-input-path",
        action="store_true",
        help="give the input notebook's path as the parameter PAPERMILL_INPUT_PATH",
    )
    group.add_argument(
        "--inject-output-path",
        action="store_true",
        help="give the output notebook's path as the parameter PAPERMILL_OUTPUT_PATH",
    )
    group.add_argument(
        "--inject-paths",
        action="store_true",
        help="both: PAPERMILL_INPUT_PATH and PAPERMILL_OUTPUT_PATH",
    )
    group.add_argument(
        "--help-notebook",
        action="store_true",
        help="print the notebooks' parameters (defaults, types, comments) and exit; runs nothing",
    )


def _fork_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--fork",
        action="store_true",
        help="fork kernels from a template that has imported ipykernel once (spawned, "
        "with a warning, where that cannot be done safely)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kernelwire`` command."""
    parser = argparse.ArgumentParser(prog="kernelwire", description="Talk to Jupyter kernels.")
    parser.add_argument("--version", action="version", version=f"kernelwire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run code on a new kernel and print what it shows")
    run.add_argument("-k", "--kernel", default="python3", help="kernel spec (default: python3)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("-c", "--code", help="the code to run")
    source.add_argument("file", nargs="?", help="a file of code to run, or - for stdin")
    run.add_argument(
        "--timeout", type=_timeout, default=None, help="seconds to allow (default, 0 or -1: none)"
    )
    run.add_argument(
        "--existing",
        metavar="CONNECTION_FILE",
        help="run on the kernel of this connection file (left running) instead of a new one",
    )
    _fork_option(run)
    _server_options(run)
    run.set_defaults(parser=run, handler=run_command)
    notebook = commands.add_parser("notebook", help="work with notebooks")
    notebook_commands = notebook.add_subparsers(dest="notebook_command", required=True)
    nb_run = notebook_commands.add_parser(
        "run",
        help="execute notebooks and write the results",
        description="Execute notebooks, each on a kernel of its own, in its own directory; "
        "the next notebook's kernel starts while the current one runs. With --jobs N, "
        "N notebooks run at once.",
    )
    nb_run.add_argument(
        "notebooks", nargs="+", help="the notebooks to execute (.ipynb), or - for one on stdin"
    )
    nb_run.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write it (default: NAME.executed.ipynb beside it): a file, - for "
        "stdout, an existing folder, or a name with {notebook_name} (e.g. "
        "out/{notebook_name}.ipynb) for several notebooks; {PARAM} placeholders are "
        "filled in from the parameters, {pm[run_uuid]} and {pm[current_datetime_utc]} "
        "too, as papermill fills them in",
    )
    nb_run.add_argument("-k", "--kernel", default=None, help="kernel (default: the notebook's)")
    nb_run.add_argument(
        "--timeout",
        type=_timeout,
        default=None,
        help="seconds allowed per cell (default, 0 or -1: no limit)",
    )
    nb_run.add_argument("--allow-errors", action="store_true", help="keep going when a cell raises")
    nb_run.add_argument(
        "--max-output",
        type=_positive_int,
        default=None,
        metavar="CHARS",
        help="keep at most CHARS characters of text output per cell (default: all)",
    )
    nb_run.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=1,
        help="how many notebooks run at once (default: 1)",
    )
    _log_options(nb_run)
    _papermill_options(nb_run)
    _parameter_options(nb_run)
    _fork_option(nb_run)
    _server_options(
        nb_run,
        "run on this Jupyter Server or Gateway URL instead; repeated, the notebooks are "
        "spread over the servers, and those of a server that stops answering run again "
        "on another",
        repeatable=True,
    )
    _remote_start_options(nb_run)
    nb_run.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the notebooks on this Dask scheduler's workers (tcp://HOST:PORT), "
        "--jobs at once; the workers need kernelwire and the notebooks' kernels",
    )
    nb_run.set_defaults(parser=nb_run, handler=notebook_run_command)
    kernels = commands.add_parser("kernels", help="list installed kernel specs")
    kernels.add_argument("--json", action="store_true", help="print the specs as JSON")
    _server_options(kernels, "list this Jupyter Server's or Gateway's kernel specs instead")
    kernels.set_defaults(parser=kernels, handler=kernels_command)
    start = commands.add_parser("start", help="start a kernel and print how to connect to it")
    start.add_argument(
        "-k", "--kernel", default="python3", help="kernel spec name (default: python3)"
    )
    start.add_argument("--connection-file", help="where to write the connection file")
    start.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the channels with CurveZMQ (kernelwire's clients can use such a "
        "kernel; jupyter console and qtconsole cannot)",
    )
    _server_options(start, "start it on this Jupyter Server or Gateway URL instead")
    start.set_defaults(parser=start, handler=start_command)
    console = commands.add_parser("console", help="an interactive prompt on a kernel")
    console.add_argument("-k", "--kernel", default="python3", help="kernel spec (default: python3)")
    console.add_argument(
        "--existing",
        metavar="CONNECTION_FILE",
        help="use the kernel of this connection file (left running) instead of a new one",
    )
    console.add_argument(
        "--history",
        default=None,
        metavar="FILE",
        help="where the typed lines are kept (default: in Jupyter's data folder; '' for none)",
    )
    _server_options(console)
    console.set_defaults(parser=console, handler=console_command)
    mcp = commands.add_parser("mcp", help="serve kernels to AI agents (Model Context Protocol)")
    mcp.add_argument(
        "--http", type=_host_port, metavar="HOST:PORT", help="streamable HTTP (default: stdio)"
    )
    _server_options(mcp, "start the kernels on this Jupyter Server or Gateway URL instead")
    mcp.add_argument(
        "--existing",
        action="append",
        metavar="CONNECTION_FILE",
        help="a running kernel every session may use (never stopped; may be repeated)",
    )
    mcp.set_defaults(parser=mcp, handler=mcp_command)
    return parser


def _show_warnings() -> None:
    """Print kernelwire's warnings (a notebook run despite being invalid, a kernel that
    had to be killed) as one line each, once per process."""
    logger = logging.getLogger("kernelwire")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("kernelwire: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as Ctrl-C stops (kernels shut down, files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_termination(signum: int, frame: object) -> None:
    # One clean-up: a second signal while the kernels shut down must not cut it short
    # (each step of it is bounded; see notebook.STOP_GRACE).
    for other in TERMINATION_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""What ``timeout``, CI cancellation and a closed terminal send."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kernelwire`` command."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, with its usage, not the top level's
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    _show_warnings()
    if threading.current_thread() is threading.main_thread():
        for signum in TERMINATION_SIGNALS:
            signal.signal(signum, _on_termination)
    try:
        return int(args.handler(args))
    except KernelwireError as exc:
        print(f"kernelwire: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
