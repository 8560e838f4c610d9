"""The kernelwire command, run for real in a subprocess."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def kernelwire(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelwire.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_code_prints_streams_and_result() -> None:
    done = kernelwire("run", "-c", "print('hi')\n6 * 7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n42\n"


def test_run_error_exits_1_with_traceback() -> None:
    done = kernelwire("run", "-c", "1/0")
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr


def test_run_file_and_stdin(tmp_path: Path) -> None:
    script = tmp_path / "code.py"
    script.write_text("print('from file')")
    assert kernelwire("run", str(script)).stdout == "from file\n"
    assert kernelwire("run", "-", stdin="print('from stdin')").stdout == "from stdin\n"


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    done = kernelwire("run", str(tmp_path / "nope.py"))
    assert done.returncode != 0
    assert "cannot read" in done.stderr and "nope.py" in done.stderr


def test_kernels_lists_specs() -> None:
    done = kernelwire("kernels")
    assert done.returncode == 0
    assert "python3" in done.stdout
    import json

    specs = json.loads(kernelwire("kernels", "--json").stdout)
    assert specs["python3"]["language"] == "python"


def test_start_prints_how_to_connect_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    from kernelwire import BlockingKernelClient

    path = tmp_path / "started.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernelwire.cli", "start", "--connection-file", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "Started kernel python3" in lines[0]
        assert str(path) in lines[1]
        with BlockingKernelClient(str(path)) as client:
            assert client.execute("1", reply=True, timeout=60)["content"]["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 5
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not path.exists()
    finally:
        proc.kill()
        proc.wait()


def test_unknown_kernel_is_a_one_line_error() -> None:
    done = kernelwire("start", "-k", "no-such-kernel")
    assert done.returncode == 2
    assert "no kernel named 'no-such-kernel'" in done.stderr and "python3" in done.stderr


NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.mark.parametrize(
    "args",
    [[], ["run"], ["notebook"], ["notebook", "run"], ["kernels"], ["start"], ["console"]],
    ids=str,
)
def test_help_everywhere(args: list[str]) -> None:
    # One interpreter per test: `import kernelwire` costs seconds on a loaded machine
    # (nbformat and jsonschema), and six in one test took 100 s of its 120 s here.
    done = kernelwire(*args, "--help")
    assert done.returncode == 0 and "usage: kernelwire" in done.stdout, args


def test_run_with_another_kernel_spec() -> None:
    done = kernelwire("run", "-k", "python3", "-c", "print(1 + 1)")
    assert done.stdout == "2\n"


def test_notebook_run_writes_the_executed_notebook(tmp_path: Path) -> None:
    import nbformat

    out = tmp_path / "out.ipynb"
    done = kernelwire("notebook", "run", str(NOTEBOOKS / "unicode.ipynb"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    nb = nbformat.read(out, as_version=4)
    assert nb.cells[1].outputs[0]["text"] == "héllo wörld ✓ 日本語 🚀\n"


def test_notebook_run_error_exits_1_naming_the_cell(tmp_path: Path) -> None:
    out = tmp_path / "errors.out.ipynb"
    done = kernelwire("notebook", "run", str(NOTEBOOKS / "errors.ipynb"), "-o", str(out))
    assert done.returncode == 1
    assert "cell In [2] (index 1) raised ZeroDivisionError" in done.stderr and out.exists()
    allowed = kernelwire(
        "notebook", "run", str(NOTEBOOKS / "errors.ipynb"), "-o", str(out), "--allow-errors"
    )
    assert allowed.returncode == 0


def test_notebook_run_clear_one_line_errors(tmp_path: Path) -> None:
    missing = kernelwire("notebook", "run", str(tmp_path / "missing.ipynb"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": 3}')
    broken = kernelwire("notebook", "run", str(bad))
    assert broken.returncode == 2 and "bad.ipynb" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1
    unknown = kernelwire(
        "notebook",
        "run",
        str(NOTEBOOKS / "unicode.ipynb"),
        "-k",
        "nope",
        "-o",
        str(tmp_path / "x.ipynb"),
    )
    assert unknown.returncode == 2 and "no kernel named 'nope'" in unknown.stderr


# Each CLI run here starts an interpreter and kernels: one run per test, so that each test
# stays well inside pytest's time limit on a loaded machine (five in one took 90 s here).
def copy_notebooks(tmp_path: Path) -> list[Path]:
    import shutil

    copies = []
    for name in ("unicode.ipynb", "errors.ipynb"):
        copies.append(tmp_path / name)
        shutil.copy(NOTEBOOKS / name, copies[-1])
    return copies


def test_notebook_run_several_notebooks(tmp_path: Path) -> None:
    import nbformat

    copies = copy_notebooks(tmp_path)
    done = kernelwire("notebook", "run", "--jobs", "2", *map(str, copies))
    assert done.returncode == 1  # errors.ipynb fails; unicode.ipynb is still written
    assert "errors.ipynb: cell In [2] (index 1) raised ZeroDivisionError" in done.stderr
    for path in copies:
        assert path.with_suffix(".executed.ipynb").exists()
    unicode_out = nbformat.read(copies[0].with_suffix(".executed.ipynb"), as_version=4)
    assert unicode_out.cells[1].outputs[0]["text"] == "héllo wörld ✓ 日本語 🚀\n"


def test_notebook_run_refuses_bad_options(tmp_path: Path) -> None:
    copies = copy_notebooks(tmp_path)
    too_many = kernelwire("notebook", "run", *map(str, copies), "-o", str(tmp_path / "x.ipynb"))
    assert too_many.returncode == 2 and "-o/--output takes one notebook" in too_many.stderr
    no_jobs = kernelwire("notebook", "run", "-j", "0", *map(str, copies))
    assert no_jobs.returncode == 2 and "--jobs: expected a whole number" in no_jobs.stderr
    assert not any(path.with_suffix(".executed.ipynb").exists() for path in copies)


def test_notebook_run_caps_output(tmp_path: Path) -> None:
    import nbformat

    source = copy_notebooks(tmp_path)[0]
    capped = kernelwire("notebook", "run", "--max-output", "3", str(source))
    assert capped.returncode == 0, capped.stderr
    unicode_out = nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4)
    assert unicode_out.cells[1].outputs[0]["text"] == "hél"
    assert "output truncated" in unicode_out.cells[1].outputs[-1]["text"]


def test_ctrl_c_during_parallel_notebooks_leaves_no_kernel(tmp_path: Path) -> None:
    """Ctrl-C while two notebooks run at once (and a third waits with its kernel started
    ahead): the command exits 130, and every kernel it started is gone."""
    import signal
    import time

    import nbformat
    import psutil

    names = ("a", "b", "c")
    for name in names:
        code = f"import os, time\nopen('pid-{name}', 'w').write(str(os.getpid()))\ntime.sleep(300)"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nbformat.write(nb, str(tmp_path / f"{name}.ipynb"))
    argv = [sys.executable, "-m", "kernelwire.cli", "notebook", "run", "-j", "2"]
    proc = subprocess.Popen(
        [*argv, *(str(tmp_path / f"{name}.ipynb") for name in names)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def kernels() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            try:
                ours = process.environ().get("JPY_PARENT_PID") == str(proc.pid)
                if ours and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    try:
        deadline = time.monotonic() + 90
        while not all((tmp_path / f"pid-{n}").exists() for n in "ab"):
            assert time.monotonic() < deadline, "the two notebooks never ran side by side"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.5)  # the third notebook's kernel is starting or started ahead
        assert len(kernels()) >= 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.communicate()
        assert not (tmp_path / "pid-c").exists()  # never begun
        deadline = time.monotonic() + 10
        while kernels() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kernels() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for leftover in kernels():
            leftover.kill()


def test_notebook_run_a_reply_with_status_error_exits_1(tmp_path: Path) -> None:
    """Issue 13, defect 1: a failed line magic (``status: error``, only a stderr line)
    fails the run as in ``jupyter execute``; the cell after it does not run."""
    import nbformat

    out = tmp_path / "out.ipynb"
    done = kernelwire("notebook", "run", str(NOTEBOOKS / "line_magic_error.ipynb"), "-o", str(out))
    assert done.returncode == 1, done.stderr
    assert "cell In [1] (index 0) raised UsageError" in done.stderr
    written = nbformat.read(out, as_version=4)
    marker = "papermill-error-cell-tag"  # papermill's marker cells, before and above it
    assert [c.metadata.get("tags") for c in written.cells[:2]] == [[marker], [marker]]
    cells = written.cells[2:]
    assert "UsageError" in cells[0].outputs[0]["text"]
    assert cells[1].outputs == [] and cells[1].execution_count is None


def test_notebook_run_converts_v2_and_v3_notebooks(tmp_path: Path) -> None:
    """Issue 13, defect 3: notebooks of format 2 and 3 run (converted to 4, as nbclient
    converts them) instead of an error that printed the whole notebook."""
    import nbformat
    from nbformat import v2

    old = v2.new_notebook(
        worksheets=[v2.new_worksheet(cells=[v2.new_code_cell(input="print('a v2 cell')")])]
    )
    (tmp_path / "v2.ipynb").write_text(v2.nbjson.writes(old))
    for name, source in (("v2", tmp_path / "v2.ipynb"), ("v3", NOTEBOOKS / "v3.ipynb")):
        out = tmp_path / f"{name}.out.ipynb"
        done = kernelwire("notebook", "run", str(source), "-o", str(out))
        assert done.returncode == 0, done.stderr
        written = nbformat.read(out, as_version=4)
        assert written.nbformat == 4
        code = [cell for cell in written.cells if cell.cell_type == "code"]
        assert code[0].outputs[0]["text"] == f"a {name} cell\n"


def test_notebook_run_accepts_kernelspecs_nbclient_accepts(tmp_path: Path) -> None:
    """Issue 13, defect 4: a kernelspec named ``python`` runs on ``python3`` (as
    jupyter_client maps it); one without ``name`` runs on ``python3`` with a warning
    instead of being refused."""
    import nbformat

    python = kernelwire(
        "notebook", "run", str(NOTEBOOKS / "kernelspec_python.ipynb"), "-o", str(tmp_path / "a")
    )
    assert python.returncode == 0, python.stderr
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('no name')")])
    nb.metadata.kernelspec = {"display_name": "Python 3", "language": "python"}
    source = tmp_path / "noname.ipynb"
    source.write_text(json.dumps(nb))
    noname = kernelwire("notebook", "run", str(source), "-o", str(tmp_path / "b.ipynb"))
    assert noname.returncode == 0, noname.stderr
    assert "warning: " in noname.stderr and "'name' is a required property" in noname.stderr
    out = nbformat.read(tmp_path / "b.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"] == "no name\n"


def test_timeout_zero_or_negative_means_no_limit(tmp_path: Path) -> None:
    """Issue 13, defect 8: ``--timeout -1`` and ``0`` mean no time limit, as in
    ``jupyter execute``; they used to interrupt every cell at once."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(0.2)")])
    source = tmp_path / "sleeps.ipynb"
    nbformat.write(nb, str(source))
    done = kernelwire("notebook", "run", "--timeout", "-1", str(source))
    assert done.returncode == 0, done.stderr
    ran = kernelwire("run", "--timeout", "0", "-c", "import time\ntime.sleep(0.2)\nprint('ok')")
    assert ran.returncode == 0 and ran.stdout == "ok\n", ran.stderr
    bad = kernelwire("notebook", "run", "--timeout", "soon", str(source))
    assert bad.returncode == 2 and "expected a number of seconds" in bad.stderr


def test_bad_output_folder_and_server_url_are_one_line_errors_before_running(
    tmp_path: Path,
) -> None:
    """Issue 13, defect 9: ``-o`` into a folder that does not exist is refused before
    the notebook runs (it used to run, then crash and lose the results); a server URL
    without a scheme is a usage error, not a traceback."""
    code = "open('ran', 'w').write('yes')"
    import nbformat

    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), str(tmp_path / "n.ipynb")
    )
    missing = tmp_path / "out" / "x.ipynb"
    done = kernelwire("notebook", "run", str(tmp_path / "n.ipynb"), "-o", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"kernelwire: cannot write {missing}: no folder {missing.parent}"
    ]
    assert not (tmp_path / "ran").exists()
    for args in (["run", "-c", "1"], ["notebook", "run", str(tmp_path / "n.ipynb")]):
        server = kernelwire(*args, "--server", "localhost:18888")
        assert server.returncode == 2, server.stderr
        assert "expected a URL such as http://localhost:8888" in server.stderr
        assert "Traceback" not in server.stderr


def test_max_output_keeps_a_rich_results_plain_text(tmp_path: Path) -> None:
    """Issue 13, defect 11: a result whose HTML is over ``--max-output`` keeps its
    ``text/plain`` (and says which representation it dropped) instead of becoming a
    truncation marker; streams are still capped."""
    import nbformat

    code = (
        "class T:\n"
        "    def _repr_html_(self):\n"
        "        return '<table>' + '<tr><td>1</td></tr>' * 200 + '</table>'\n"
        "    def __repr__(self):\n"
        "        return 'T(200 rows)'\n"
        "T()"
    )
    cells = [nbformat.v4.new_code_cell(code), nbformat.v4.new_code_cell("print('y' * 5000)")]
    source = tmp_path / "rich.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(source))
    done = kernelwire("notebook", "run", "--max-output", "1000", str(source))
    assert done.returncode == 0, done.stderr
    rich, printed = nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4).cells
    assert [o["output_type"] for o in rich.outputs] == ["execute_result"]
    assert rich.outputs[0]["data"] == {"text/plain": "T(200 rows)"}
    assert rich.outputs[0]["metadata"]["kernelwire"]["dropped"] == {"text/html": 3815}
    assert printed.outputs[0]["text"] == "y" * 1000
    assert "output truncated" in printed.outputs[-1]["text"]


def test_kernel_death_names_the_cell_writes_the_partial_notebook_and_exits_3(
    tmp_path: Path,
) -> None:
    """Issue 13, defect 12: a kernel that dies in a cell gives exit code 3 (not 2, a
    usage error's), a message naming the cell, and the notebook as far as it ran."""
    import nbformat

    cells = [
        nbformat.v4.new_code_cell("print('before')"),
        nbformat.v4.new_code_cell("import os\nos._exit(7)"),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    source = tmp_path / "dies.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(source))
    done = kernelwire("notebook", "run", str(source))
    assert done.returncode == 3, done.stderr
    # named by its In [n] if its execute_input came before the death was seen
    assert re.search(r"cell (In \[2\] \()?index 1\)?: the kernel died while it ran", done.stderr)
    assert "exit code 7" in done.stderr
    written = nbformat.read(source.with_suffix(".executed.ipynb"), as_version=4)
    assert written.cells[0].outputs[0]["text"] == "before\n"
    assert written.cells[2].outputs == []
    ran = kernelwire("run", "-c", "import os\nos._exit(7)")
    assert ran.returncode == 3 and "the kernel died while the code ran" in ran.stderr


def test_small_usage_mistakes_get_the_right_one_line_answer(tmp_path: Path) -> None:
    """Issue 13, defect 14: an unknown flag on a subcommand prints that subcommand's
    usage; ``run x.ipynb`` points to ``notebook run``; ``run`` with nothing to run on a
    terminal says what it needs instead of waiting silently on stdin."""
    import os
    import pty

    unknown = kernelwire("notebook", "run", "x.ipynb", "--bogus")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("usage: kernelwire notebook run")
    assert "unrecognized arguments: --bogus" in unknown.stderr
    notebook = kernelwire("run", str(NOTEBOOKS / "unicode.ipynb"))
    assert notebook.returncode == 2
    assert "is a notebook: kernelwire notebook run" in notebook.stderr
    leader, follower = pty.openpty()
    try:
        waiting = subprocess.run(
            [sys.executable, "-m", "kernelwire.cli", "run"],
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert waiting.returncode == 2
    assert "give the code with -c CODE, a FILE, or - to read stdin" in waiting.stderr


def test_notebook_run_reads_stdin_writes_stdout_and_says_what_raised(tmp_path: Path) -> None:
    """Issue 13, defect 14: ``notebook run -`` reads the notebook from stdin and writes
    it to stdout (the summary goes to stderr), the summary counts in good English and
    says when cells raised under ``--allow-errors``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0")])
    done = kernelwire("notebook", "run", "--allow-errors", "-", stdin=nbformat.writes(nb))
    assert done.returncode == 0, done.stderr
    written = nbformat.reads(done.stdout, as_version=4)
    assert written.cells[0].outputs[0]["ename"] == "ZeroDivisionError"
    assert "Executed 1 code cell of - (1 cell raised, allowed); wrote stdout" in done.stderr
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_no_color_is_honoured_on_a_terminal() -> None:
    """Issue 13, defect 14: ``NO_COLOR`` turns the traceback's colours off on a terminal."""
    import os
    import pty

    def stderr_of(env: dict[str, str]) -> bytes:
        leader, follower = pty.openpty()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "kernelwire.cli", "run", "-c", "1/0"],
                stdout=subprocess.DEVNULL,
                stderr=follower,
                env=env,
                timeout=120,
            )
            os.close(follower)
            follower = -1
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the other end is closed: all read
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            shown = b"".join(chunks)
            assert proc.returncode == 1, shown.decode(errors="replace")
            return shown
        finally:
            os.close(leader)
            if follower != -1:
                os.close(follower)

    plain = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert b"\x1b[" in stderr_of(plain)
    without = stderr_of({**plain, "NO_COLOR": "1"})
    assert b"ZeroDivisionError" in without and b"\x1b[" not in without


def test_the_command_imports_what_it_uses(tmp_path: Path) -> None:
    """``run`` imports neither nbformat nor the remote client; ``notebook run`` imports
    nbformat without the IRI grammar jsonschema would build at import (seconds)."""

    def imported(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "kernelwire", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines()]
        return {line for line in lines if line and not line.startswith("imported package")}

    ran = imported("run", "-c", "1")
    assert "kernelwire.cli" in ran  # the import times were read
    assert not {"nbformat", "jsonschema", "httpx", "kernelwire.remote"} & ran
    notebook = tmp_path / "nb.ipynb"
    shutil.copy(NOTEBOOKS / "empty_cells.ipynb", notebook)
    ran = imported("notebook", "run", str(notebook), "-o", str(tmp_path / "out.ipynb"))
    assert {"nbformat", "jsonschema"} <= ran
    assert "rfc3987_syntax.syntax_helpers" not in ran  # where the grammar is built


def test_run_on_an_existing_kernel_leaves_it_running(tmp_path: Path) -> None:
    from kernelwire import run_kernel_in_process

    with run_kernel_in_process(tmp_path / "kernel.json") as kernel:
        path = kernel.connection_file
        assert kernelwire("run", "--existing", path, "-c", "x = 5").returncode == 0
        done = kernelwire("run", "--existing", path, "-c", "print(x * 2)")
        assert done.returncode == 0 and done.stdout == "10\n", done.stderr
        # past its timeout, the code is interrupted; the kernel is not stopped
        done = kernelwire(
            "run", "--existing", path, "--timeout", "2", "-c", "import time; time.sleep(60)"
        )
        assert done.returncode == 1 and "did not finish within 2 s" in done.stderr
        assert kernel.is_alive()
        done = kernelwire("run", "--existing", path, "-c", "print(x)")
        assert done.returncode == 0 and done.stdout == "5\n", done.stderr
    missing = kernelwire("run", "--existing", str(tmp_path / "nope.json"), "-c", "1")
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    assert "Traceback" not in missing.stderr
