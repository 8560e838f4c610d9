"""Notebooks executed by kernelwire and by nbclient give equal outputs (volatile values aside)."""

from __future__ import annotations

import copy
import json
import re
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest

from kernelwire import notebook
from kernelwire.notebook import CellExecutionError, NotebookError
from kernelwire.widgets import WIDGET_STATE

pytestmark = pytest.mark.usefixtures("no_leaks")

NOTEBOOKS = sorted((Path(__file__).parent / "notebooks").glob("*.ipynb"))


def canonical_ids(cells: Any, widgets: dict[str, Any]) -> Any:
    """``[cells, widgets]`` (a notebook's outputs and its widget state) with widget model
    ids (random per run: the only volatile part of the widget state) renamed
    ``model-0``, ``model-1``, ... in an order that does not depend on the ids
    themselves: first the models the cells show, in order of appearance, each followed
    by the models its state refers to (its keys sorted); then any model nothing refers
    to, by its content.

    Renaming in order of appearance in the text alone is not enough: nbformat writes a
    notebook's keys sorted, so the models no output shows (layouts, styles, a box's
    children) came in the order of their random ids, and a notebook written by
    ``jupyter execute`` never matched one written by kernelwire (nor by itself in
    another run)."""
    models: dict[str, Any] = widgets.get("state", {})
    names: dict[str, str] = {}

    def visit(model_id: str) -> None:
        if model_id in names:
            return
        names[model_id] = f"model-{len(names)}"
        state = models.get(model_id, {}).get("state", {})
        for key in sorted(state):
            for found in MODEL_ID.findall(json.dumps(state[key])):
                visit(found)

    for found in MODEL_ID.findall(json.dumps(cells)):
        visit(found)
    by_content = sorted(
        (m for m in models if m not in names),
        key=lambda m: MODEL_ID.sub("", json.dumps(models[m], sort_keys=True)),
    )
    for model_id in by_content:
        visit(model_id)
    text = json.dumps([cells, widgets])
    return json.loads(MODEL_ID.sub(lambda m: names.get(m.group(0), m.group(0)), text))


MODEL_ID = re.compile(r"[0-9a-f]{32}")


def widget_state(nb: Any) -> dict[str, Any]:
    return dict(nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}))


def normalised(nb: Any) -> Any:
    """Cells' counts and outputs, with each stream's text joined and kept apart from the
    other outputs: how ipykernel splits a stream into messages, and whether stdout or
    stderr is flushed first when a cell writes both, depend on timing, not on the client
    (stderr came before stdout in one of eight runs of the same cell). Widget model ids
    are renamed in order of appearance, the widget state included."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[dict[str, Any]] = []
        streams: dict[str, str] = {}
        for output in cell.get("outputs", []):
            output = copy.deepcopy(dict(output))
            if output["output_type"] == "stream":
                streams[output["name"]] = streams.get(output["name"], "") + output["text"]
            else:
                outputs.append(output)
        cells.append((cell.get("execution_count"), outputs, streams))
    return canonical_ids(cells, widget_state(nb))


def run_nbclient(nbclient: Any, nb: Any, **options: Any) -> None:
    """Execute ``nb`` with nbclient.

    A notebook with widgets runs on kernelwire's kernel manager (nbclient's own code
    still handles every message): nbclient's Output widget sends its ``comm_msg`` on
    jupyter_client's shell socket while it waits on that socket for the reply, and 3 runs
    in 8 of such a notebook never saw the ``execute_reply`` here.
    """
    if any("ipywidgets" in cell.source for cell in nb.cells):
        from kernelwire.manager import AsyncKernelManager

        options["kernel_manager_class"] = AsyncKernelManager
        nbclient.NotebookClient(nb, kernel_name="python3", timeout=120, **options).execute()
    else:
        nbclient_on_jupyter_client(nbclient, nb, **options)


def nbclient_on_jupyter_client(nbclient: Any, nb: Any, **options: Any) -> None:
    """Execute ``nb`` with nbclient on jupyter_client's own kernel manager: the reference.

    jupyter_client picks a kernel's ports by binding port 0 and letting them go, so under
    xdist another worker's kernel can take one first; that kernel then dies at start
    ("Address already in use"; seen in a full run). Not kernelwire's to fix: the
    reference is started once more.
    """
    for attempt in (1, 2):
        try:
            nbclient.NotebookClient(nb, kernel_name="python3", timeout=120, **options).execute()
            return
        except RuntimeError as exc:  # nbclient's DeadKernelError is one too
            if attempt == 2 or "Kernel died before replying to kernel_info" not in str(exc):
                raise


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_equal_nbclients(path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    theirs = nbformat.read(path, as_version=4)
    run_nbclient(nbclient, theirs, allow_errors=True)
    ours = notebook.execute(path, allow_errors=True, timeout=120)
    assert normalised(ours) == normalised(theirs)
    for index in notebook.cells_to_run(ours):
        timing = ours.cells[index].metadata["execution"]
        assert set(timing) >= {
            "iopub.status.busy",
            "iopub.execute_input",
            "shell.execute_reply",
            "iopub.status.idle",
        }


def test_error_names_the_cell_and_stops(tmp_path: Path) -> None:
    with pytest.raises(CellExecutionError) as excinfo:
        notebook.execute(NOTEBOOKS[[p.stem for p in NOTEBOOKS].index("errors")])
    assert excinfo.value.cell_index == 1
    assert excinfo.value.ename == "ZeroDivisionError" and excinfo.value.traceback
    assert "cell In [2] (index 1)" in str(excinfo.value)


def test_raises_exception_tag_and_skip_execution() -> None:
    path = NOTEBOOKS[[p.stem for p in NOTEBOOKS].index("errors")]
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["tags"] = ["raises-exception"]
    done = notebook.execute(nb)
    assert done.cells[2].outputs[0]["text"] == "after the error 1\n"
    assert done.cells[3].outputs[0]["ename"] == "ValueError"
    skipped = notebook.execute(NOTEBOOKS[[p.stem for p in NOTEBOOKS].index("skip_and_rich")])
    assert skipped.cells[0].outputs == [] and skipped.cells[0].execution_count is None


def test_bad_notebooks_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotebookError, match="no such file"):
        notebook.execute(tmp_path / "absent.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    with pytest.raises(NotebookError, match=r"broken\.ipynb"):
        notebook.execute(broken)


def test_cwd_and_pool(tmp_path: Path) -> None:
    from kernelwire import KernelPool

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\nos.getcwd()")])
    done = notebook.execute(copy.deepcopy(nb), cwd=tmp_path)
    assert done.cells[0].outputs[0]["data"]["text/plain"] == repr(str(tmp_path))
    with KernelPool("python3", size=1) as pool:
        pooled = notebook.execute(copy.deepcopy(nb), pool=pool)
        assert pooled.cells[0].outputs[0]["output_type"] == "execute_result"


def test_execute_many_runs_each_on_its_own_kernel_in_its_own_directory(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    cells = [
        nbformat.v4.new_code_cell("'seen' if 'marker' in globals() else 'fresh'"),
        nbformat.v4.new_code_cell("marker = 1\nimport os\nos.getcwd()"),
    ]
    paths = []
    for folder in dirs:
        folder.mkdir()
        path = folder / "nb.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=copy.deepcopy(cells)), path)
        paths.append(path)
    failing = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("1/0"), nbformat.v4.new_code_cell("never = 1")]
    )
    starts: list[int] = []
    runs = notebook.execute_many(
        [paths[0], failing, tmp_path / "missing.ipynb", paths[1]],
        on_notebook_start=lambda index, run: starts.append(index),
    )
    assert starts == [0, 1, 3]  # the unreadable one never starts
    first, bad, missing, last = runs
    for run, folder in ((first, dirs[0]), (last, dirs[1])):
        assert run.ok and run.source is not None
        assert run.notebook is not None
        outputs = [cell.outputs[0]["data"]["text/plain"] for cell in run.notebook.cells]
        assert outputs == ["'fresh'", repr(str(folder))]  # a new namespace, its own directory
    assert isinstance(bad.error, CellExecutionError) and bad.error.cell_index == 0
    assert bad.notebook is not None and bad.notebook.cells[1].get("outputs") in (None, [])
    assert isinstance(missing.error, NotebookError) and missing.notebook is None
    assert not missing.ok


def _meet(me: str, other: str) -> str:
    """A cell that marks ``me`` as running, then waits (up to 60 s) for ``other`` to run."""
    return (
        "import pathlib, time\n"
        f"pathlib.Path({me!r}).touch()\n"
        "for _ in range(1200):\n"
        f"    if pathlib.Path({other!r}).exists():\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "else:\n"
        f"    raise RuntimeError({other!r} + ' never ran alongside')\n"
        f"{me!r}"
    )


def test_execute_many_runs_jobs_notebooks_at_once(tmp_path: Path) -> None:
    """With jobs=2, the first two notebooks run side by side (each waits to see the other
    running, which one after another could never do), and a third follows when a lane
    is free. Results come back in the order given; each notebook's hooks run on one
    thread."""
    codes = [_meet("first", "second"), _meet("second", "first"), "'third'"]
    notebooks = [nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c)]) for c in codes]
    threads: dict[int, set[int]] = {}

    def seen(index: int, *_: object) -> None:
        threads.setdefault(index, set()).add(threading.get_ident())

    runs = notebook.execute_many(
        notebooks,
        cwd=tmp_path,
        jobs=2,
        timeout=90,
        on_notebook_start=seen,
        on_notebook_done=seen,
        on_cell_start=lambda index, cell: seen(codes.index(cell.source)),
    )
    assert [run.error for run in runs] == [None, None, None]
    results = [run.notebook and run.notebook.cells[0].outputs[-1]["data"] for run in runs]
    assert [data["text/plain"] for data in results] == ["'first'", "'second'", "'third'"]
    assert all(len(idents) == 1 for idents in threads.values()), threads
    assert threads[0] != threads[1]  # two lanes


def test_execute_many_needs_at_least_one_job() -> None:
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        notebook.execute_many([], jobs=0)


def test_max_output_chars_caps_each_cell_with_a_marker() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("print('x' * 5000)"),
            nbformat.v4.new_code_cell("print('short')"),
        ]
    )
    done = notebook.execute(nb, max_output_chars=1000)
    long_cell, short_cell = (cell.outputs for cell in done.cells)
    kept = "".join(o["text"] for o in long_cell if o.get("name") == "stdout")
    assert kept == "x" * 1000
    assert long_cell[-1]["name"] == "stderr"
    assert "output truncated, 4001 more characters not kept" in long_cell[-1]["text"]
    assert [o["text"] for o in short_cell] == ["short\n"]  # the cap is per cell


def test_execute_many_reports_a_kernel_that_cannot_start() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "x"}
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("2")])
    runs = notebook.execute_many([nb, good])
    assert runs[0].error is not None and "no-such-kernel" in str(runs[0].error)
    assert runs[1].ok and runs[1].notebook is not None
    assert runs[1].notebook.cells[0].outputs[0]["data"]["text/plain"] == "2"


def test_ipython_history_stays_in_memory_as_with_nbclient() -> None:
    """nbclient starts IPython kernels with --HistoryManager.hist_file=:memory:, so a run
    neither writes nor waits on the user's history database; so does kernelwire."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("str(get_ipython().history_manager.hist_file)")]
    )
    ours = notebook.execute(copy.deepcopy(nb))
    assert ours.cells[0].outputs[0]["data"]["text/plain"] == "':memory:'"
    own_setting = notebook.execute(copy.deepcopy(nb), history_file=None)
    assert own_setting.cells[0].outputs[0]["data"]["text/plain"] != "':memory:'"
    runs = notebook.execute_many([copy.deepcopy(nb)])
    assert runs[0].notebook is not None
    assert runs[0].notebook.cells[0].outputs[0]["data"]["text/plain"] == "':memory:'"


def _notebook(stem: str) -> Path:
    return NOTEBOOKS[[p.stem for p in NOTEBOOKS].index(stem)]


def test_a_reply_with_status_error_fails_the_cell() -> None:
    """Issue 13, defect 1: ``%undefined-line-magic`` replies ``status: error`` and shows
    only a stderr line; the cell still fails, and the next cell does not run."""
    with pytest.raises(CellExecutionError) as excinfo:
        notebook.execute(_notebook("line_magic_error"))
    assert excinfo.value.cell_index == 0
    assert excinfo.value.ename == "UsageError"
    allowed = notebook.execute(_notebook("line_magic_error"), allow_errors=True)
    assert allowed.cells[1].outputs[0]["text"] == "after the failed magic\n"


def test_widget_state_is_saved_and_output_widgets_capture_as_in_nbclient() -> None:
    """Issue 13, defect 2: the widgets' state is written as nbclient writes it (every
    view resolves to a saved model; stale state from the input is replaced), and what
    ``with out:`` shows goes to the Output widget, an error raised there included,
    which does not fail the run."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    source = nbformat.read(_notebook("widgets"), as_version=4)
    source.metadata["widgets"] = {
        WIDGET_STATE: {"state": {"0" * 32: {"model_name": "Stale"}}, "version_major": 2}
    }
    theirs = copy.deepcopy(source)
    run_nbclient(nbclient, theirs)
    ours = notebook.execute(source, timeout=120)  # no allow_errors: nothing failed
    assert normalised(ours) == normalised(theirs)
    state = widget_state(ours)
    assert state["version_major"] == 2 and "0" * 32 not in state["state"]
    views = [
        output["data"][WIDGET_VIEW]["model_id"]
        for cell in ours.cells
        for output in cell.outputs
        if WIDGET_VIEW in output.get("data", {})
    ]
    assert len(views) == 5 and all(view in state["state"] for view in views)
    capture = ours.cells[2]
    assert [o["output_type"] for o in capture.outputs] == ["display_data", "stream"]
    assert capture.outputs[1]["text"] == "outside the widget\n"
    out = state["state"][capture.outputs[0]["data"][WIDGET_VIEW]["model_id"]]["state"]
    assert [o["output_type"] for o in out["outputs"]] == ["stream", "display_data", "error"]
    assert out["outputs"][2]["evalue"] == "raised inside the widget"
    assert ours.cells[3].outputs == []
    # the kernel was sent the captured outputs, as a front end sends them
    assert ours.cells[6].outputs[0]["text"].startswith("3 ")
    image = next(m for m in state["state"].values() if m["model_name"] == "ImageModel")
    assert image["buffers"][0]["path"] == ["value"]


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_empty_cells_are_not_executed() -> None:
    """Issue 13, defect 5: a cell of only whitespace is skipped, as nbclient skips it:
    it keeps its count and outputs, and takes no execution count from the cells after."""
    done = notebook.execute(_notebook("empty_cells"))
    assert [cell.execution_count for cell in done.cells] == [None, 1, 9, 2]
    assert done.cells[2].outputs[0]["text"] == "an old output\n"
    assert "execution" not in done.cells[0].metadata
