"""Notebook parameters the papermill way, so papermill's notebooks and tools work as they are.

A cell tagged ``parameters`` holds a notebook's defaults; :func:`inject` writes the
values given into a new cell tagged ``injected-parameters`` right after it (at the top
without one; in place of the cell an earlier run injected), as code in the kernel's
language, and records them in ``metadata.papermill``. :func:`inspect` reads the
parameters cell back (names, defaults, types, help comments) without a kernel.
:class:`PapermillRecord` writes the timings and statuses papermill keeps on the
notebook and its cells.

Python, R, Julia and bash kernels are supported; any other language raises
:class:`~kernelwire.errors.NoParameterTranslator` before a kernel starts.

>>> nb = kernelwire.notebook.execute("train.ipynb", parameters={"alpha": 0.5})  # doctest: +SKIP
>>> nb.metadata.papermill.parameters                                            # doctest: +SKIP
{'alpha': 0.5}
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import keyword
import logging
import math
import re
import shlex
import tokenize
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar, NamedTuple

import nbformat
from nbformat import NotebookNode

from . import __version__
from .errors import NoParameterTranslator, ParameterError

log = logging.getLogger("kernelwire.notebook")

PARAMETERS_TAG = "parameters"
"""The tag of the cell that holds a notebook's default parameters."""
INJECTED_TAG = "injected-parameters"
"""The tag of the cell :func:`inject` writes."""


class Parameter(NamedTuple):
    """A parameter read from a notebook's parameters cell, as papermill reports one."""

    name: str
    inferred_type_name: str
    """The annotation or ``# type:`` comment; ``"None"`` when the cell gives none."""
    default: str
    """The default's source text."""
    help: str
    """The comment on the assignment's line."""


class Translator:
    """Writes parameter values as code in one kernel language (papermill's rules)."""

    language: ClassVar[str] = ""

    @classmethod
    def literal(cls, name: str, value: Any) -> str:
        """``value`` as a literal of the language; ``name`` is for the error message."""
        raise NotImplementedError

    @classmethod
    def assignment(cls, name: str, value: Any) -> str:
        """The statement that sets ``name`` to ``value``."""
        raise NotImplementedError

    @classmethod
    def code(cls, parameters: Mapping[str, Any], comment: str = "Parameters") -> str:
        """The injected cell's source: a comment line, then one assignment per parameter."""
        lines = [f"# {comment}".strip()]
        lines.extend(cls.assignment(name, value) for name, value in parameters.items())
        return "\n".join(lines) + "\n"

    @classmethod
    def inspect(cls, source: str) -> list[Parameter] | None:
        """The parameters a parameters cell defines, or ``None`` when this language's
        cells cannot be read."""
        return None


def _python_char(char: str) -> str:
    """One character inside a double-quoted Python string, escaped as papermill escapes
    it (Python's ``unicode_escape`` codec, plus the double quote): ASCII text as is."""
    code = ord(char)
    if char in _PYTHON_ESCAPES:
        return _PYTHON_ESCAPES[char]
    if 0x20 <= code < 0x7F:
        return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


_PYTHON_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quoted(value: Any) -> str:
    """``value``'s text as a double-quoted string, escaped as papermill escapes strings
    for Python, R and Julia alike."""
    return '"' + "".join(map(_python_char, str(value))) + '"'


class PythonTranslator(Translator):
    """Python literals: strings double-quoted with ASCII escapes, ``float('nan')`` and
    ``float('inf')`` for the non-finite floats, lists and dicts written out."""

    language = "python"

    @classmethod
    def literal(cls, name: str, value: Any) -> str:
        if value is None or isinstance(value, (bool, int)):
            return str(value)
        if isinstance(value, float):
            if math.isnan(value):
                return "float('nan')"
            if math.isinf(value):
                return "float('-inf')" if value < 0 else "float('inf')"
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(cls.literal(name, item) for item in value) + "]"
        if isinstance(value, dict):
            items = (f"{quoted(key)}: {cls.literal(name, v)}" for key, v in value.items())
            return "{" + ", ".join(items) + "}"
        # A string, or anything else (a date, a tuple) passed on as its text, as papermill does.
        return quoted(value)

    @classmethod
    def assignment(cls, name: str, value: Any) -> str:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ParameterError(f"parameter {name!r} is not a Python name")
        return f"{name} = {cls.literal(name, value)}"

    @classmethod
    def inspect(cls, source: str) -> list[Parameter]:
        """Every top-level assignment to one name: its annotation (or ``# type:``
        comment), default and the comment on its last line. A cell that is not valid
        Python (IPython magics) is read line by line, skipping what does not parse."""
        try:
            return _python_parameters(source)
        except SyntaxError:
            found: list[Parameter] = []
            for line in source.splitlines():
                try:
                    found.extend(_python_parameters(line))
                except SyntaxError:
                    continue
            return found


def _python_parameters(source: str) -> list[Parameter]:
    tree = ast.parse(source)
    comments = _comments(source)
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        default = ast.get_source_segment(source, node.value) or ""
        comment = comments.get(node.end_lineno or node.lineno, "")
        type_name, help_text = None, comment
        if match := re.match(r"type:\s*(\S*)\s*", comment):
            type_name, help_text = match.group(1), comment[match.end() :]
        if annotation is not None:
            if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                type_name = annotation.value  # a quoted annotation
            else:
                type_name = ast.get_source_segment(source, annotation)
        found.append(
            Parameter(
                target.id,
                str(type_name).strip(),
                " ".join(default.split()) if "\n" in default else default.strip(),
                help_text.strip(),
            )
        )
    return found


def _comments(source: str) -> dict[int, str]:
    """Each line's comment text (after ``#``), by line number."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string[1:].strip()
    return comments


_BASH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BashTranslator(Translator):
    """Shell variables: strings quoted for the shell, ``true``/``false``, lists as
    arrays, ``None`` as the empty string; a dict has no bash form."""

    language = "bash"

    @classmethod
    def literal(cls, name: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, list):
            return "(" + " ".join(cls.literal(name, item) for item in value) + ")"
        if isinstance(value, dict):
            raise ParameterError(f"parameter {name!r}: a bash kernel cannot be given a mapping")
        return shlex.quote(str(value))

    @classmethod
    def assignment(cls, name: str, value: Any) -> str:
        if not _BASH_NAME.match(name):
            raise ParameterError(f"parameter {name!r} is not a shell variable name")
        return f"{name}={cls.literal(name, value)}"


_R_NAME = re.compile(r"[A-Za-z.][A-Za-z0-9._]*\Z")


class RTranslator(Translator):
    """R values: ``NULL``, ``TRUE``/``FALSE``, lists and named lists (``list("k" = v)``),
    strings double-quoted as Python's; a leading ``_`` is dropped from a name (R does not
    allow it), as papermill does."""

    language = "R"

    @classmethod
    def literal(cls, name: str, value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, list):
            return "list(" + ", ".join(cls.literal(name, item) for item in value) + ")"
        if isinstance(value, dict):
            items = (f"{quoted(key)} = {cls.literal(name, v)}" for key, v in value.items())
            return "list(" + ", ".join(items) + ")"
        return quoted(value)

    @classmethod
    def assignment(cls, name: str, value: Any) -> str:
        bare = name.lstrip("_")
        if not _R_NAME.match(bare):
            raise ParameterError(f"parameter {name!r} is not an R name")
        return f"{bare} = {cls.literal(name, value)}"


_JULIA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_!]*\Z")


class JuliaTranslator(Translator):
    """Julia values: ``nothing``, ``true``/``false``, vectors, ``Dict("k" => v)``,
    strings double-quoted as Python's, with ``$`` escaped too (papermill leaves it, and
    Julia would interpolate it)."""

    language = "julia"

    @classmethod
    def literal(cls, name: str, value: Any) -> str:
        if value is None:
            return "nothing"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, list):
            return "[" + ", ".join(cls.literal(name, item) for item in value) + "]"
        if isinstance(value, dict):
            items = (f"{cls._string(key)} => {cls.literal(name, v)}" for key, v in value.items())
            return "Dict(" + ", ".join(items) + ")"
        return cls._string(value)

    @staticmethod
    def _string(value: Any) -> str:
        return quoted(value).replace("$", "\\$")

    @classmethod
    def assignment(cls, name: str, value: Any) -> str:
        if not _JULIA_NAME.match(name):
            raise ParameterError(f"parameter {name!r} is not a Julia name")
        return f"{name} = {cls.literal(name, value)}"


TRANSLATORS: dict[str, type[Translator]] = {
    "python": PythonTranslator,
    "pysparkkernel": PythonTranslator,
    "bash": BashTranslator,
    "R": RTranslator,
    "r": RTranslator,
    "ir": RTranslator,
    "julia": JuliaTranslator,
}
"""Translators by kernel name or language; a kernel's name is looked up first."""


def translator_for(kernel_name: str, language: str) -> type[Translator]:
    """The translator for a kernel (by its name, then its language), as papermill picks
    one; :class:`NoParameterTranslator` names the language when there is none."""
    found = TRANSLATORS.get(kernel_name) or TRANSLATORS.get(language)
    if found is None:
        supported = {t.language for t in TRANSLATORS.values()}
        raise NoParameterTranslator(kernel_name, language, sorted(supported))
    return found


def language_of(nb: NotebookNode, kernel_name: str | None = None) -> str:
    """The language of the kernel a notebook runs on: the notebook's own
    (``language_info.name``, ``kernelspec.language``), unless ``kernel_name`` names
    another kernel; then, or when the notebook says nothing, the installed spec's."""
    from .notebook import kernel_name_of

    metadata = nb.get("metadata", {})
    if kernel_name is None or kernel_name == kernel_name_of(nb):
        for section, key in (("language_info", "name"), ("kernelspec", "language")):
            value = metadata.get(section, {}).get(key)
            if isinstance(value, str) and value:
                return value
    from .errors import KernelwireError
    from .lifecycle.specs import get_kernel_spec

    try:
        return get_kernel_spec(kernel_name or kernel_name_of(nb)).language
    except KernelwireError:
        return ""


def _translator(
    nb: NotebookNode, kernel_name: str | None, language: str | None
) -> type[Translator]:
    from .notebook import kernel_name_of

    name = kernel_name or kernel_name_of(nb)
    return translator_for(name, language or language_of(nb, kernel_name))


def parameter_code(
    nb: NotebookNode,
    parameters: Mapping[str, Any],
    kernel_name: str | None = None,
    language: str | None = None,
) -> str:
    """The code :func:`inject` would write into ``nb``: raises what it would raise
    (:class:`ParameterError`, :class:`NoParameterTranslator`), changes nothing."""
    return _translator(nb, kernel_name, language).code(parameters)


def _tagged(nb: NotebookNode, tag: str) -> int | None:
    """The index of the first cell tagged ``tag``."""
    for index, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def inject(
    nb: NotebookNode,
    parameters: Mapping[str, Any],
    kernel_name: str | None = None,
    language: str | None = None,
    *,
    comment: str = "Parameters",
) -> NotebookNode:
    """Write ``parameters`` into ``nb`` (in place; returned) as papermill does.

    A new code cell tagged ``injected-parameters`` replaces the one an earlier run
    injected; else it goes right after the first cell tagged ``parameters``; else at the
    top (with a warning). ``metadata.papermill.parameters`` records the values. The
    kernel is the notebook's unless ``kernel_name`` is given; its language picks the
    translator (:class:`NoParameterTranslator` when none fits). With no parameters the
    notebook is left as it is.
    """
    translator = _translator(nb, kernel_name, language)
    source = translator.code(parameters)  # may raise: before anything changes
    papermill_metadata(nb)["parameters"] = dict(parameters)
    if not parameters:
        return nb
    # Cell ids came with format 4.5: an older notebook is brought up to it (as papermill
    # does), or the new cell's id would make it invalid.
    nbformat.v4.upgrade(nb)  # type: ignore[no-untyped-call]
    known = translator.inspect(_parameters_source(nb))
    if known is not None:
        names = {p.name for p in known}
        for unknown in (p for p in parameters if p not in names):
            log.warning("parameter %r is not in the notebook's parameters cell", unknown)
    cell = nbformat.v4.new_code_cell(source=source)  # type: ignore[no-untyped-call]
    cell.metadata["tags"] = [INJECTED_TAG]
    injected, defaults = _tagged(nb, INJECTED_TAG), _tagged(nb, PARAMETERS_TAG)
    if injected is not None:
        nb.cells[injected] = cell
    elif defaults is not None:
        nb.cells.insert(defaults + 1, cell)
    else:
        log.warning("the notebook has no cell tagged 'parameters': parameters go at the top")
        nb.cells.insert(0, cell)
    return nb


def parameters_cell(nb: NotebookNode) -> int | None:
    """The index of the notebook's first cell tagged ``parameters``, or ``None``."""
    return _tagged(nb, PARAMETERS_TAG)


def _parameters_source(nb: NotebookNode) -> str:
    index = parameters_cell(nb)
    return "" if index is None else str(nb.cells[index].source)


def inspect(
    nb: NotebookNode, kernel_name: str | None = None, language: str | None = None
) -> list[Parameter] | None:
    """The parameters a notebook's ``parameters`` cell defines, no kernel started.

    ``[]`` when there is no such cell (or it defines nothing); ``None`` when the kernel's
    language has a translator but its cells cannot be read (bash);
    :class:`NoParameterTranslator` when the language has none.
    """
    translator = _translator(nb, kernel_name, language)
    if _tagged(nb, PARAMETERS_TAG) is None:
        return []
    return translator.inspect(_parameters_source(nb))


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value as papermill reads it: ``True``, ``False``, ``None``,
    an int, a float, else the string itself."""
    named = {"True": True, "False": False, "None": None}
    if text in named:
        return named[text]
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    return text


def from_yaml(text: str | bytes, where: str) -> dict[str, Any]:
    """Parameters from YAML (a mapping; dates stay strings, as papermill reads them);
    ``where`` names the option or file in the error."""
    import yaml

    try:
        value = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ParameterError(f"{where}: not valid YAML: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParameterError(
            f"{where}: expected a mapping of parameter names to values, got {type(value).__name__}"
        )
    return {str(key): item for key, item in value.items()}


def from_yaml_file(path: str) -> dict[str, Any]:
    """Parameters from a YAML (or JSON) file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return from_yaml(handle.read(), path)
    except OSError as exc:
        raise ParameterError(f"cannot read parameters file {path}: {exc.strerror or exc}") from None


def from_base64(text: str) -> dict[str, Any]:
    """Parameters from base64-encoded YAML."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError(f"-b {text[:40]!r}: not valid base64") from None
    return from_yaml(decoded, "-b")


_LOADER: type[Any] | None = None


def _yaml_loader() -> type[Any]:
    """YAML's safe loader without its timestamp rule: ``2024-01-01`` stays a string,
    which every translator can write (papermill reads YAML the same way)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        resolvers = {
            first: [rule for rule in rules if rule[0] != "tag:yaml.org,2002:timestamp"]
            for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        _LOADER = type("DatelessLoader", (yaml.SafeLoader,), {"yaml_implicit_resolvers": resolvers})
    return _LOADER


def papermill_metadata(nb: NotebookNode) -> dict[str, Any]:
    """``nb.metadata.papermill``, made with the keys papermill's reader makes when absent."""
    section: dict[str, Any] = nb.metadata.get("papermill")
    if not isinstance(section, NotebookNode):  # read back as attributes, as nbformat's are
        section = nb.metadata["papermill"] = NotebookNode(section or {})  # type: ignore[no-untyped-call]
    section.setdefault("default_parameters", {})
    section.setdefault("parameters", {})
    section.setdefault("environment_variables", {})
    section["version"] = __version__  # kernelwire's: the run was not papermill's
    return section


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PapermillRecord:
    """The run's timings and outcome in papermill's metadata, on the notebook and on
    every cell: ``start_time``, ``end_time``, ``duration`` (seconds), ``exception``,
    and per cell ``status`` (``pending``, ``running``, ``completed``, ``failed``)."""

    def __init__(self, nb: NotebookNode, input_path: str | None) -> None:
        self.nb = nb
        self.section = papermill_metadata(nb)
        self.section.update(
            input_path=input_path,
            output_path=self.section.get("output_path"),
            start_time=None,
            end_time=None,
            duration=None,
            exception=None,
        )
        self._started = _now()
        self.section["start_time"] = self._started.isoformat()
        for cell in nb.cells:
            cell.setdefault("metadata", {})["papermill"] = NotebookNode(  # type: ignore[no-untyped-call]
                exception=None, start_time=None, end_time=None, duration=None, status="pending"
            )
        self._cell_started: dict[int, datetime] = {}

    def cell_started(self, index: int) -> None:
        """A cell begins to run."""
        now = self._cell_started[index] = _now()
        self.nb.cells[index].metadata.papermill.update(
            start_time=now.isoformat(), status="running", exception=False
        )

    def cell_done(self, index: int, failed: bool) -> None:
        """A cell ended; ``failed``: its error (or timeout, or the kernel's death) stops the run."""
        now = _now()
        record = self.nb.cells[index].metadata.papermill
        record.update(
            end_time=now.isoformat(),
            duration=(now - self._cell_started[index]).total_seconds(),
            status="failed" if failed else "completed",
        )
        if failed:
            record["exception"] = True
            self.section["exception"] = True

    def finish(self) -> None:
        """The run ended: its end time; cells before the failure that had nothing to run
        (markdown, empty, skipped) count as completed, as papermill counts them."""
        now = _now()
        self.section.update(
            end_time=now.isoformat(), duration=(now - self._started).total_seconds()
        )
        for cell in self.nb.cells:
            record = cell.metadata.papermill
            if record["status"] in ("failed", "running"):
                break
            record["status"] = "completed"
