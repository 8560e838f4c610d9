"""``kernelwire notebook run``'s options from papermill and ``jupyter execute`` (issue 13):
the command run in a subprocess, on a real ipykernel, with notebooks written here."""

from __future__ import annotations

import copy
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from test_cli import kernelwire
from test_cli_stopping import Command, command  # noqa: F401 - a fixture, used by name
from test_remote import TOKEN, jupyter_server_url  # noqa: F401 - a fixture, used by name


def write_notebook(path: Path, *sources: str, **cell_metadata: Any) -> Path:
    """A notebook of code cells; ``cell_metadata`` maps ``cell<i>`` to a cell's metadata."""
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    for index, cell in enumerate(cells):
        cell.metadata.update(cell_metadata.get(f"cell{index}", {}))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))
    return path


def texts(nb: Any) -> list[str]:
    """Each cell's stream text, joined."""
    return ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]


def kernels_of(pid: int) -> list[psutil.Process]:
    """The live kernels the command of process ``pid`` started."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("JPY_PARENT_PID") == str(pid) and (
                process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_a_killed_run_leaves_the_cells_done_so_far_on_disk(
    tmp_path: Path,
    command: list[Command],  # noqa: F811
) -> None:
    """Save after each cell: while the third cell sleeps, the output file already holds
    the first two cells' outputs, and a SIGKILL (nothing cleaned up, nothing flushed)
    leaves it there, a whole notebook."""
    source = write_notebook(
        tmp_path / "slow.ipynb",
        "print('one')",
        "print('two')",
        "import time\nprint('three')\ntime.sleep(300)",
    )
    out = tmp_path / "slow.out.ipynb"
    cmd = Command(tmp_path, "notebook", "run", str(source), "-o", str(out))
    command.append(cmd)
    try:
        deadline = time.monotonic() + 90
        while not (out.exists() and texts(nbformat.read(out, as_version=4))[1] == "two\n"):
            assert time.monotonic() < deadline, "the first two cells were never saved"
            assert cmd.proc.poll() is None, cmd.proc.communicate()
            time.sleep(0.1)
        assert cmd.proc.poll() is None  # still in the third cell
        cmd.proc.send_signal(signal.SIGKILL)
        cmd.proc.wait(30)
        written = nbformat.read(out, as_version=4)
        nbformat.validate(written)
        assert texts(written)[:2] == ["one\n", "two\n"]
        assert [cell.execution_count for cell in written.cells[:2]] == [1, 2]
        assert written.cells[0].metadata["execution"]["shell.execute_reply"]
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        for kernel in kernels_of(cmd.proc.pid):  # orphaned by the SIGKILL
            kernel.kill()


def test_log_output_streams_each_output_to_stderr_as_it_arrives(tmp_path: Path) -> None:
    """``--log-output`` shows a cell's output while the cell still runs, also into a
    pipe: the cell prints, then waits for a file this test writes only once it has read
    that line from the command's stderr."""
    gate = tmp_path / "gate"
    wait = (
        "import time, pathlib, sys\n"
        "print('first', flush=True)\n"
        "for _ in range(600):\n"
        f"    if pathlib.Path({str(gate)!r}).exists(): break\n"
        "    time.sleep(0.1)\n"
        "print('gate opened' if pathlib.Path(" + repr(str(gate)) + ").exists() else 'no gate')\n"
        "print('to stderr', file=sys.stderr)"
    )
    source = write_notebook(tmp_path / "live.ipynb", wait, "6 * 7")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernelwire.cli", "notebook", "run", "--log-output", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        while not seen or seen[-1] != "first\n":
            line = proc.stderr.readline()
            assert line, f"the command ended before showing the output: {seen}"
            seen.append(line)
        gate.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    log = "".join(seen) + err
    assert log.splitlines() == [
        "--- live.ipynb: cell index 0 ---",
        "first",
        "gate opened",
        "to stderr",
        "--- live.ipynb: cell index 1 ---",
        "42",
    ]
    assert "Executed 2 code cells" in out


def test_stdout_and_stderr_files_get_the_cells_streams(tmp_path: Path) -> None:
    """``--stdout-file`` and ``--stderr-file`` receive the cells' streams (not results),
    the same file both, in order; a file that cannot be opened is a usage error."""
    source = write_notebook(
        tmp_path / "streams.ipynb",
        "import sys\nprint('out 1', flush=True)\nprint('err 1', file=sys.stderr, flush=True)",
        "print('out 2')\n'a result'",
    )
    done = kernelwire(
        "notebook", "run", str(source),
        "--stdout-file", str(tmp_path / "out.txt"), "--stderr-file", str(tmp_path / "err.txt"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "out 1\nout 2\n"
    assert (tmp_path / "err.txt").read_text() == "err 1\n"
    assert "out 1" not in done.stderr  # no --log-output: not shown
    both = tmp_path / "both.txt"
    done = kernelwire(
        "notebook", "run", str(source), "--stdout-file", str(both), "--stderr-file", str(both)
    )
    assert done.returncode == 0, done.stderr
    assert both.read_text() == "out 1\nerr 1\nout 2\n"
    bad = kernelwire("notebook", "run", str(source), "--stdout-file", str(tmp_path / "no" / "x"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"kernelwire: cannot write --stdout-file {tmp_path / 'no' / 'x'}: No such file or directory"
    ]


def test_cwd_sets_the_kernels_working_directory(tmp_path: Path) -> None:
    """``--cwd DIR`` runs the kernel in DIR (default: the notebook's folder); a folder
    that does not exist, or ``--cwd`` with ``--server``, is a one-line usage error."""
    source = write_notebook(tmp_path / "where.ipynb", "import os\nprint(os.getcwd())")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = kernelwire("notebook", "run", str(source), "--cwd", str(elsewhere))
    assert done.returncode == 0, done.stderr
    written = nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4)
    assert texts(written) == [f"{elsewhere}\n"]
    missing = kernelwire("notebook", "run", str(source), "--cwd", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"kernelwire: notebook run: --cwd {tmp_path / 'nope'}: no such folder"
    ]
    remote = kernelwire(
        "notebook", "run", str(source), "--start-timeout", "5", "--server", "http://127.0.0.1:9"
    )
    assert remote.returncode == 2
    assert "--start-timeout is for local kernels" in remote.stderr


def test_cwd_on_a_server_is_a_folder_under_its_root(
    tmp_path: Path,
    jupyter_server_url: str,  # noqa: F811
) -> None:
    """With ``--server``, the kernel runs in the server's root by default, and in a
    folder of the server (relative to its root) with ``--cwd``."""
    from kernelwire import connect_server

    with connect_server(jupyter_server_url, TOKEN) as server:
        server.transport.request("PUT", "api/contents/inner", json={"type": "directory"})
    source = write_notebook(tmp_path / "where.ipynb", "import os\nprint(os.getcwd())")
    remote = ("--server", jupyter_server_url, "--token", TOKEN)
    done = kernelwire("notebook", "run", str(source), *remote)
    assert done.returncode == 0, done.stderr
    root = texts(nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4))[0].strip()
    done = kernelwire("notebook", "run", str(source), "--cwd", "inner", *remote)
    assert done.returncode == 0, done.stderr
    inner = texts(nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4))[0]
    assert inner == f"{root}/inner\n"


def test_start_timeout_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path,
    command: list[Command],  # noqa: F811
) -> None:
    """``--start-timeout`` bounds the kernel's start: past it, one line says so (exit
    2, as for a kernel that cannot start) and the kernel and its files are gone."""
    source = write_notebook(tmp_path / "n.ipynb", "open('ran', 'w')")
    cmd = Command(tmp_path, "notebook", "run", str(source), "--start-timeout", "0.001")
    command.append(cmd)
    err = cmd.proc.communicate(timeout=120)[1]
    assert cmd.proc.returncode == 2, err
    # e.g. "... within 0.001 s (it used 0.1 s of CPU); allow more with --start-timeout"
    assert re.fullmatch(
        r"kernelwire: kernel python3 did not answer within 0\.001 s( \(.*\))?; "
        r"allow more with --start-timeout\n",
        err,
    ), err
    assert not (tmp_path / "ran").exists()
    assert not source.with_suffix(".executed.ipynb").exists()
    assert cmd.leftovers() == []
    assert kernels_of(cmd.proc.pid) == []
    bad = kernelwire("notebook", "run", str(source), "--start-timeout", "0")
    assert bad.returncode == 2 and "expected a positive number of seconds" in bad.stderr


def test_prepare_only_injects_parameters_and_runs_nothing(tmp_path: Path) -> None:
    """``--prepare-only`` writes the notebook with its parameters injected and
    papermill's paths recorded, without starting a kernel; with ``--report-mode`` every
    code cell's input is hidden, the injected one too."""
    source = write_notebook(
        tmp_path / "p.ipynb",
        "alpha = 1",
        "open('ran', 'w')\nprint(alpha)",
        cell0={"tags": ["parameters"]},
    )
    out = tmp_path / "prepared.ipynb"
    done = kernelwire(
        "notebook", "run", str(source), "--prepare-only", "--report-mode", "-p", "alpha", "2",
        "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Prepared {source} without running it; wrote {out}\n"
    assert not (tmp_path / "ran").exists()
    written = nbformat.read(out, as_version=4)
    assert [cell.source for cell in written.cells] == [
        "alpha = 1",
        "# Parameters\nalpha = 2\n",
        "open('ran', 'w')\nprint(alpha)",
    ]
    assert written.cells[1].metadata.tags == ["injected-parameters"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in written.cells)
    assert all(cell.metadata.jupyter.source_hidden is True for cell in written.cells)
    assert written.metadata.papermill.parameters == {"alpha": 2}
    assert written.metadata.papermill.input_path == str(source)
    assert written.metadata.papermill.output_path == str(out)


def test_report_mode_hides_inputs_of_an_executed_notebook(tmp_path: Path) -> None:
    """``--report-mode`` (papermill's): the code cells' input is hidden in the output
    through ``metadata.jupyter.source_hidden``; markdown cells are left alone."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("print(1)")]
    )
    source = tmp_path / "report.ipynb"
    nbformat.write(nb, str(source))
    done = kernelwire("notebook", "run", str(source), "--report-mode")
    assert done.returncode == 0, done.stderr
    markdown, code = nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4).cells
    assert code.metadata.jupyter == {"source_hidden": True} and code.outputs[0].text == "1\n"
    assert "jupyter" not in markdown.metadata


def test_skip_tag_names_the_cells_not_run(tmp_path: Path) -> None:
    """``--skip-tag TAG`` skips the cells tagged TAG instead of nbclient's
    ``skip-execution``; an empty tag is a usage error."""
    source = write_notebook(
        tmp_path / "skips.ipynb",
        "print('plain')",
        "print('tagged skip-execution')",
        "print('tagged slow')",
        cell1={"tags": ["skip-execution"]},
        cell2={"tags": ["slow"]},
    )
    done = kernelwire("notebook", "run", str(source), "--skip-tag", "slow")
    assert done.returncode == 0, done.stderr
    assert "Executed 2 code cells" in done.stdout
    written = nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4)
    assert texts(written) == ["plain\n", "tagged skip-execution\n", ""]
    empty = kernelwire("notebook", "run", str(source), "--skip-tag", "")
    assert empty.returncode == 2 and "--skip-tag: expected a tag" in empty.stderr


def two_notebooks(tmp_path: Path) -> list[Path]:
    return [write_notebook(tmp_path / f"{name}.ipynb", f"print('{name}')") for name in ("a", "b")]


def test_output_names_with_notebook_name_for_several_notebooks(tmp_path: Path) -> None:
    """``-o out/{notebook_name}.ipynb`` writes each notebook under its own name."""
    (tmp_path / "out").mkdir()
    pattern = str(tmp_path / "out" / "{notebook_name}.run.ipynb")
    done = kernelwire("notebook", "run", *map(str, two_notebooks(tmp_path)), "-o", pattern)
    assert done.returncode == 0, done.stderr
    for name in ("a", "b"):
        written = nbformat.read(tmp_path / "out" / f"{name}.run.ipynb", as_version=4)
        assert texts(written) == [f"{name}\n"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.run.ipynb", "b.run.ipynb"]


def test_an_existing_folder_as_output_for_several_notebooks(tmp_path: Path) -> None:
    """``-o FOLDER`` (an existing one) writes each notebook into it under its name."""
    folder = tmp_path / "results"
    folder.mkdir()
    done = kernelwire("notebook", "run", *map(str, two_notebooks(tmp_path)), "-o", str(folder))
    assert done.returncode == 0, done.stderr
    for name in ("a", "b"):
        assert texts(nbformat.read(folder / f"{name}.ipynb", as_version=4)) == [f"{name}\n"]


def test_output_mistakes_are_one_line_usage_errors_before_running(tmp_path: Path) -> None:
    """Several notebooks into one file, an unknown ``{name}``, a folder that would
    overwrite the inputs, two notebooks of one name into one folder: each is a one-line
    usage error, and nothing runs."""
    a, b = two_notebooks(tmp_path)
    (tmp_path / "other").mkdir()
    other_a = write_notebook(tmp_path / "other" / "a.ipynb", "print('other a')")
    (tmp_path / "out").mkdir()
    cases = {
        (str(a), str(b), "-o", str(tmp_path / "one.ipynb")): "-o/--output takes one notebook",
        (str(a), str(b), "-o", "-"): "-o/--output takes one notebook",
        (str(a), "-o", str(tmp_path / "{name}.ipynb"), "-p", "alpha", "1"): (
            "no parameter 'name' to fill in {name} (give -p name VALUE"
        ),
        (str(a), "-o", str(tmp_path / "{0}.ipynb")): "a placeholder without a name",
        (str(a), "-o", str(tmp_path / "{alpha:%Y}.ipynb"), "-p", "alpha", "1"): (
            "cannot fill in its placeholders: Invalid format specifier"
        ),
        (str(a), str(b), "-o", str(tmp_path / "{alpha}.ipynb"), "-p", "alpha", "1"): (
            f"{a} and {b} would both be written to {tmp_path / '1.ipynb'}"
        ),
        (str(a), "-o", str(tmp_path)): f"would overwrite {a}; give another folder",
        (str(a), str(other_a), "-o", str(tmp_path / "out")): (
            f"{a} and {other_a} would both be written to {tmp_path / 'out' / 'a.ipynb'}"
        ),
    }
    for args, message in cases.items():
        done = kernelwire("notebook", "run", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, (args, done.stderr)
    assert list((tmp_path / "out").iterdir()) == []
    assert not list(tmp_path.glob("*.executed.ipynb"))


def test_stdin_and_stdout(tmp_path: Path) -> None:
    """``-o -`` writes a notebook read from a file to stdout (the summary to stderr);
    ``-`` reads the notebook from stdin, here written to a file."""
    a = two_notebooks(tmp_path)[0]
    done = kernelwire("notebook", "run", str(a), "-o", "-")
    assert done.returncode == 0, done.stderr
    assert texts(nbformat.reads(done.stdout, as_version=4)) == ["a\n"]
    assert "wrote stdout" in done.stderr
    out = tmp_path / "from-stdin.ipynb"
    done = kernelwire("notebook", "run", "-", "-o", str(out), stdin=a.read_text())
    assert done.returncode == 0, done.stderr
    assert texts(nbformat.read(out, as_version=4)) == ["a\n"]
    assert done.stdout == f"Executed 1 code cell of -; wrote {out}\n"


PARAMETERS_NOTEBOOK = Path(__file__).parent / "notebooks" / "parameters.ipynb"


def test_output_placeholders_are_filled_in_from_the_parameters(tmp_path: Path) -> None:
    """``-o`` placeholders are filled in as papermill fills in an output path (its own
    function gives the same name): parameters, with format specs and items, papermill's
    ``pm`` built-ins, and kernelwire's ``{notebook_name}``; the path written is the one
    recorded in ``metadata.papermill.output_path``."""
    from papermill.parameterize import parameterize_path

    template = str(tmp_path / "{notebook_name}-{alpha:.2f}-{opts[deep]}-{pm[run_uuid]}.ipynb")
    done = kernelwire(
        "notebook", "run", str(PARAMETERS_NOTEBOOK), "-o", template,
        "-p", "alpha", "0.5", "-y", "opts: {deep: yes}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (written,) = tmp_path.glob("*.ipynb")
    match = re.fullmatch(r"parameters-0\.50-True-([0-9a-f-]{36})\.ipynb", written.name)
    assert match, written.name
    run_uuid = match.group(1)
    values = {"alpha": 0.5, "opts": {"deep": True}, "pm": {"run_uuid": run_uuid}}
    assert parameterize_path(template.replace("{notebook_name}", "parameters"), values) == str(
        written
    )
    nb = nbformat.read(written, as_version=4)
    assert nb.metadata.papermill.output_path == str(written)
    assert nb.metadata.papermill.parameters == {"alpha": 0.5, "opts": {"deep": True}}


def papermill_prepared(source: Path, out: Path, *options: str) -> Any:
    """The notebook papermill's own command writes with ``--prepare-only`` (no kernel)."""
    papermill = [sys.executable, "-m", "papermill", "-k", "python3", "-l", "python"]
    done = subprocess.run(
        [*papermill, str(source), str(out), "--prepare-only", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return nbformat.read(out, as_version=4)


def cells_and_tags(nb: Any) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_inject_paths_gives_papermills_parameters(tmp_path: Path) -> None:
    """``--inject-paths`` (and ``--inject-input-path``, ``--inject-output-path``) put
    the paths in the parameters as papermill's command does: the same injected cell,
    before the parameters given, which may replace them; the kernel sees them."""
    source = write_notebook(
        tmp_path / "paths.ipynb",
        "PAPERMILL_INPUT_PATH = PAPERMILL_OUTPUT_PATH = None",
        "print(PAPERMILL_INPUT_PATH, PAPERMILL_OUTPUT_PATH, alpha)",
        cell0={"tags": ["parameters"]},
    )
    out = tmp_path / "out.ipynb"
    for options in (
        ["--inject-paths", "-p", "alpha", "2"],
        ["--inject-input-path", "-p", "alpha", "3"],
        ["--inject-output-path", "-r", "alpha", "x", "-r", "PAPERMILL_OUTPUT_PATH", "mine"],
    ):
        theirs = papermill_prepared(source, out, *options)
        done = kernelwire(
            "notebook", "run", str(source), "-o", str(out), "--prepare-only", *options
        )
        assert done.returncode == 0, done.stderr
        ours = nbformat.read(out, as_version=4)
        assert cells_and_tags(ours) == cells_and_tags(theirs), options
        assert ours.metadata.papermill.parameters == theirs.metadata.papermill.parameters
    done = kernelwire(
        "notebook", "run", str(source), "-o", str(out), "--inject-paths", "-p", "alpha", "1"
    )
    assert done.returncode == 0, done.stderr
    assert texts(nbformat.read(out, as_version=4))[2] == f"{source} {out} 1\n"


def failing_notebook(path: Path) -> Path:
    return write_notebook(path, "x = 1", "print('ran')", "1 / 0", "print('never')")


def test_a_failed_cell_gets_papermills_error_markers(tmp_path: Path) -> None:
    """The notebook written when a cell's error stops the run has papermill's markers:
    the same cells, tags and link as papermill's own run of it writes, found and dropped
    by papermill's own code; a new run drops them first; ``--no-error-markers`` leaves
    the cells as they are."""
    import papermill
    from papermill.execute import ERROR_MARKER_TAG, remove_error_markers

    source = failing_notebook(tmp_path / "fails.ipynb")
    theirs_path = tmp_path / "theirs.ipynb"
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(
            str(source), str(theirs_path), progress_bar=False, kernel_name="python3"
        )
    theirs = nbformat.read(theirs_path, as_version=4)
    out = tmp_path / "ours.ipynb"
    done = kernelwire("notebook", "run", str(source), "-o", str(out))
    assert done.returncode == 1
    ours = nbformat.read(out, as_version=4)
    nbformat.validate(ours)
    tags = [(c.cell_type, list(c.metadata.get("tags", []))) for c in ours.cells]
    assert tags == [(c.cell_type, list(c.metadata.get("tags", []))) for c in theirs.cells]
    assert tags[0] == tags[3] == ("markdown", [ERROR_MARKER_TAG])
    assert 'href="#papermill-error-cell"' in ours.cells[0].source
    assert "In [3]" in ours.cells[0].source
    assert 'id="papermill-error-cell"' in ours.cells[3].source
    assert ours.cells[4].source == "1 / 0" and ours.cells[4].outputs[0].ename == "ZeroDivisionError"
    original = nbformat.read(source, as_version=4)
    assert [c.source for c in remove_error_markers(copy.deepcopy(ours)).cells] == [
        c.source for c in original.cells
    ]
    # The marked notebook as the next run's input: its markers go before it runs.
    again = kernelwire("notebook", "run", str(out), "-o", str(tmp_path / "again.ipynb"))
    assert again.returncode == 1
    rerun = nbformat.read(tmp_path / "again.ipynb", as_version=4)
    assert [c.source for c in rerun.cells] == [c.source for c in ours.cells]
    plain = kernelwire(
        "notebook", "run", str(out), "-o", str(tmp_path / "plain.ipynb"), "--no-error-markers"
    )
    assert plain.returncode == 1
    unmarked = nbformat.read(tmp_path / "plain.ipynb", as_version=4)
    assert [c.source for c in unmarked.cells] == [c.source for c in ours.cells]  # left as is
    plain = kernelwire(
        "notebook", "run", str(source), "-o", str(tmp_path / "plain.ipynb"), "--no-error-markers"
    )
    unmarked = nbformat.read(tmp_path / "plain.ipynb", as_version=4)
    assert [c.source for c in unmarked.cells] == [c.source for c in original.cells]
