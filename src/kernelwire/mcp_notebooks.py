"""The notebook files behind ``kernelwire mcp``'s notebook tools: read, edit, and write
a cell's outputs back, as a front end would.

Every change is a read-modify-write of the whole file under one lock per file (two
sessions editing one notebook through this server never lose each other's edit), and
each write replaces the file whole (:func:`kernelwire.notebook.write`). A cell is found
again by its ``id`` after a run (nbformat 4.5): cells inserted or deleted meanwhile do
not make the outputs land in the wrong cell.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from .errors import NotebookEditError, NotebookError
from .execution import ExecutionResult

SOURCE_PREVIEW = 2_000
"""Characters of a cell's source that read_notebook shows (the rest is summarised)."""
OUTPUT_PREVIEW = 500
"""Characters of a cell's outputs that read_notebook shows."""
CELL_TYPES = ("code", "markdown", "raw")


class NotebookFiles:
    """Notebook files as the tools use them, one lock per file."""

    def __init__(self) -> None:
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, path: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(path, threading.Lock())

    @staticmethod
    def resolve(path: str) -> Path:
        """``path`` (relative to the server's working directory), checked to be a notebook."""
        resolved = Path(path).expanduser().resolve()
        if resolved.suffix != ".ipynb":
            raise NotebookEditError(f"{path}: not a notebook (expected a .ipynb file)")
        return resolved

    def read(self, path: str) -> NotebookNode:
        """The notebook at ``path``."""
        from .notebook import read

        resolved = self.resolve(path)
        if not resolved.exists():
            raise NotebookEditError(f"{path}: no such notebook")
        try:
            return read(resolved)
        except NotebookError as exc:
            raise NotebookEditError(str(exc)) from None

    def summary(self, path: str) -> list[dict[str, Any]]:
        """Each cell: index, id, type, source, and (code cells) execution count and a
        short text form of its outputs."""
        nb = self.read(path)
        return [_cell_summary(index, cell) for index, cell in enumerate(nb.cells)]

    def edit(self, path: str, change: Callable[[NotebookNode], str]) -> str:
        """Apply ``change`` to the notebook (created empty if missing) and write it; returns
        what ``change`` says it did."""
        from .notebook import write

        resolved = self.resolve(path)
        with self._lock(resolved):
            new = nbformat.v4.new_notebook  # a missing file: an empty notebook
            nb = self.read(path) if resolved.exists() else new()  # type: ignore[no-untyped-call]
            said = change(nb)
            write(nb, resolved)
        return said

    def insert_cell(self, path: str, index: int, source: str, cell_type: str) -> str:
        """Insert a new cell at ``index`` (-1 or the cell count: at the end)."""

        def insert(nb: NotebookNode) -> str:
            at = len(nb.cells) if index == -1 else index
            _check_index(path, nb, at, inserting=True)
            nb.cells.insert(at, _new_cell(cell_type, source))
            return f"inserted a {cell_type} cell at index {at} of {path} ({len(nb.cells)} cells)"

        return self.edit(path, insert)

    def replace_cell(self, path: str, index: int, source: str) -> str:
        """Replace cell ``index``'s source (its outputs are cleared: they were another code's)."""

        def replace(nb: NotebookNode) -> str:
            _check_index(path, nb, index)
            cell = nb.cells[index]
            cell.source = source
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
            return f"replaced cell {index} of {path}"

        return self.edit(path, replace)

    def delete_cell(self, path: str, index: int) -> str:
        """Delete cell ``index``."""

        def delete(nb: NotebookNode) -> str:
            _check_index(path, nb, index)
            del nb.cells[index]
            return f"deleted cell {index} of {path} ({len(nb.cells)} cells left)"

        return self.edit(path, delete)

    def code_cell(self, path: str, index: int) -> tuple[str, str | None]:
        """Code cell ``index``'s source and id (to find it again after the run)."""
        nb = self.read(path)
        _check_index(path, nb, index)
        cell = nb.cells[index]
        if cell.cell_type != "code":
            raise NotebookEditError(f"{path}: cell {index} is a {cell.cell_type} cell, not code")
        return str(cell.source), cell.get("id")

    def write_outputs(
        self, path: str, index: int, cell_id: str | None, result: ExecutionResult
    ) -> str:
        """Put ``result``'s outputs and execution count into the cell (found by its id, or
        at ``index`` in a notebook without ids); returns where they went."""

        def put(nb: NotebookNode) -> str:
            at = index
            if cell_id is not None:
                found = [i for i, c in enumerate(nb.cells) if c.get("id") == cell_id]
                if not found:
                    raise NotebookEditError(
                        f"{path}: the cell that ran (id {cell_id}) was deleted meanwhile: "
                        "its outputs were not written"
                    )
                at = found[0]
            _check_index(path, nb, at)
            cell = nb.cells[at]
            cell.outputs = [nbformat.from_dict(dict(o)) for o in result.outputs]  # type: ignore[no-untyped-call]
            cell.execution_count = result.execution_count
            return f"outputs written into cell {at} of {path}"

        return self.edit(path, put)


def _check_index(path: str, nb: NotebookNode, index: int, inserting: bool = False) -> None:
    last = len(nb.cells) if inserting else len(nb.cells) - 1
    if not 0 <= index <= last:
        what = "insert at" if inserting else "cell"
        raise NotebookEditError(
            f"{path}: no {what} index {index}: it has {len(nb.cells)} cells (0 to {last})"
        )


def _new_cell(cell_type: str, source: str) -> NotebookNode:
    if cell_type not in CELL_TYPES:
        raise NotebookEditError(
            f"cell_type must be one of {', '.join(CELL_TYPES)}, not {cell_type!r}"
        )
    make = getattr(nbformat.v4, f"new_{cell_type}_cell")
    cell: NotebookNode = make(source)
    return cell


def _clip(text: str, limit: int) -> str:
    return (
        text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"
    )


def _cell_summary(index: int, cell: NotebookNode) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "index": index,
        "id": cell.get("id"),
        "cell_type": cell.cell_type,
        "source": _clip(str(cell.source), SOURCE_PREVIEW),
    }
    if cell.cell_type == "code":
        summary["execution_count"] = cell.get("execution_count")
        summary["outputs"] = _clip(_outputs_text(cell.get("outputs", [])), OUTPUT_PREVIEW)
    return summary


def _outputs_text(outputs: list[Any]) -> str:
    """Outputs as a model reads them: streams and text/plain, errors by name, other
    representations by MIME type."""
    from .client._hooks import strip_ansi

    parts: list[str] = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(str(output.get("text", "")))
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            text = data.get("text/plain")
            others = [m for m in data if m != "text/plain"]
            if isinstance(text, str):
                parts.append(text)
            if others:
                parts.append(f"[{', '.join(others)}]")
    return strip_ansi("\n".join(p.rstrip("\n") for p in parts if p))
