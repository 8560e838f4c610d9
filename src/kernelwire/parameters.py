"""Notebook parameters the papermill way, so papermill's notebooks and tools work as they are.

A cell tagged ``parameters`` holds a notebook's defaults; :func:`inject` writes the
values given into a new cell tagged ``injected-parameters`` right after it (at the top
without one; in place of the cell an earlier run injected), as code in the kernel's
language, and records them in ``metadata.papermill``. :func:`inspect` reads the
parameters cell back (names, defaults, types, help comments) without a kernel.
:class:`PapermillRecord` writes the timings and statuses papermill keeps on the
notebook and its cells.

Every language papermill has a translator for is supported (Python, R, Julia, Scala,
MATLAB, bash, and .NET Interactive's C#, F# and PowerShell: see :data:`TRANSLATORS`);
any other language raises :class:`~kernelwire.errors.NoParameterTranslator` before a
kernel starts.

>>> nb = kernelwire.notebook.execute("train.ipynb", parameters={"alpha": 0.5})  # doctest: +SKIP
>>> nb.metadata.papermill.parameters                                            # doctest: +SKIP
{'alpha': 0.5}
"""

from __future__ import annotations

import ast
import base64
import binascii
import importlib
import io
import keyword
import logging
import math
import re
import shlex
import tokenize
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import partial
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
    """Writes parameter values as code in one kernel language, by papermill's rules.

    A value is written by its type (``None``, ``bool``, ``int``, ``float``, ``list``,
    ``dict``, else its text as a string); a language changes the parts it writes
    differently. The defaults are papermill's: strings double-quoted with Python's
    ASCII escapes, ``true``/``false``, numbers as Python prints them.
    """

    language: ClassVar[str] = ""
    comment_format: ClassVar[str] = "# {}"
    assign_format: ClassVar[str] = "{name} = {value}"
    name_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
    name_kind: ClassVar[str] = "a name"
    """What a parameter's name must be, for the error: ``"a Python name"``."""
    null: ClassVar[str | None] = "None"
    """``None``'s text; ``None`` when the language has no value for it (refused)."""
    true: ClassVar[str] = "true"
    false: ClassVar[str] = "false"
    non_finite: ClassVar[tuple[str, str, str]] = ("nan", "inf", "-inf")
    """NaN, infinity and minus infinity (papermill's default: Python's text)."""
    long_suffix: ClassVar[bool] = False
    """Whether an integer past 32 bits gets ``L`` (Scala, C#, F#), as papermill writes it."""
    byte_escapes: ClassVar[bool] = True
    surrogates: ClassVar[bool] = False
    """How strings escape characters (see :func:`quoted`)."""
    list_format: ClassVar[str] = "[{}]"
    separator: ClassVar[str] = ", "
    """A list: its items joined by ``separator``, put in ``list_format``."""
    pair_format: ClassVar[str | None] = None
    dict_format: ClassVar[str] = "{{{}}}"
    pair_separator: ClassVar[str] = ", "
    """A dict: each ``pair_format`` (of ``key`` and ``value``) joined by
    ``pair_separator``, put in ``dict_format``; no ``pair_format``: refused."""

    @classmethod
    def literal(cls, name: str, value: Any) -> str:
        """``value`` as a literal of the language; ``name`` is for the error message."""
        if value is None:
            if cls.null is None:
                raise ParameterError(
                    f"parameter {name!r}: a {cls.language} kernel cannot be given None"
                )
            return cls.null
        if isinstance(value, bool):
            return cls.true if value else cls.false
        if isinstance(value, int):
            return cls.integer(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return repr(value)
            nan, inf, minus_inf = cls.non_finite
            return nan if math.isnan(value) else minus_inf if value < 0 else inf
        if isinstance(value, list):
            return cls.sequence([cls.literal(name, item) for item in value])
        if isinstance(value, dict):
            items = [(cls.key(key), cls.literal(name, item)) for key, item in value.items()]
            return cls.mapping(name, items)
        # A string, or anything else (a date, a tuple) passed on as its text, as papermill does.
        return cls.string(value)

    @classmethod
    def integer(cls, value: int) -> str:
        """An ``int`` (never a ``bool``)."""
        if cls.long_suffix and not -(2**31) <= value < 2**31:
            return f"{value}L"
        return str(value)

    @classmethod
    def string(cls, value: Any) -> str:
        """A string, or the text of a value of no other kind."""
        return quoted(value, byte_escapes=cls.byte_escapes, surrogates=cls.surrogates)

    @classmethod
    def key(cls, value: Any) -> str:
        """A mapping's key (papermill writes every key as a string)."""
        return cls.string(value)

    @classmethod
    def sequence(cls, items: list[str]) -> str:
        """A list, from its items' literals."""
        return cls.list_format.format(cls.separator.join(items))

    @classmethod
    def mapping(cls, name: str, items: list[tuple[str, str]]) -> str:
        """A dict, from its keys' and values' literals; refused where the language has
        no form for it."""
        if cls.pair_format is None:
            raise ParameterError(
                f"parameter {name!r}: a {cls.language} kernel cannot be given a mapping"
            )
        pairs = (cls.pair_format.format(key=key, value=value) for key, value in items)
        return cls.dict_format.format(cls.pair_separator.join(pairs))

    @classmethod
    def valid_name(cls, name: str) -> bool:
        """Whether the language takes ``name`` as a variable's name."""
        return cls.name_pattern.match(name) is not None

    @classmethod
    def target(cls, name: str) -> str:
        """The variable a parameter sets (its name, unless the language cannot take it)."""
        return name

    @classmethod
    def assignment(cls, name: str, value: Any) -> str:
        """The statement that sets ``name`` to ``value``."""
        target = cls.target(name)
        if not cls.valid_name(target):
            raise ParameterError(f"parameter {name!r} is not {cls.name_kind}")
        return cls.assign_format.format(name=target, value=cls.literal(name, value))

    @classmethod
    def code(cls, parameters: Mapping[str, Any], comment: str = "Parameters") -> str:
        """The injected cell's source: a comment line, then one assignment per parameter."""
        lines = [cls.comment_format.format(comment).strip()]
        lines.extend(cls.assignment(name, value) for name, value in parameters.items())
        return "\n".join(lines) + "\n"

    @classmethod
    def inspect(cls, source: str) -> list[Parameter] | None:
        """The parameters a parameters cell defines, or ``None`` when this language's
        cells cannot be read."""
        return None


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str, *, byte_escapes: bool = True, surrogates: bool = False) -> str:
    """One character inside a double-quoted string, escaped as papermill escapes it
    (Python's ``unicode_escape`` codec, plus the double quote): printable ASCII as is.

    ``byte_escapes=False`` writes ``\\u00XX`` for ``\\xXX`` (C# reads up to four hex
    digits after ``\\x``; Java and Scala have no ``\\x``); ``surrogates=True`` writes a
    character past U+FFFF as a UTF-16 pair of ``\\u`` escapes (Scala has no ``\\U``).
    """
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if 0x20 <= code < 0x7F:
        return char
    if code <= 0xFF and byte_escapes:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    if surrogates:
        high, low = divmod(code - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\U{code:08x}"


def quoted(value: Any, *, byte_escapes: bool = True, surrogates: bool = False) -> str:
    """``value``'s text as a double-quoted string, escaped as papermill escapes strings
    (see :func:`_escaped` for the options)."""
    escape = partial(_escaped, byte_escapes=byte_escapes, surrogates=surrogates)
    return '"' + "".join(map(escape, str(value))) + '"'


class PythonTranslator(Translator):
    """Python literals: strings double-quoted with ASCII escapes, ``float('nan')`` and
    ``float('inf')`` for the non-finite floats, lists and dicts written out; formatted
    by black when black is installed, as papermill formats them."""

    language = "python"
    name_kind = "a Python name"
    true, false = "True", "False"
    non_finite = ("float('nan')", "float('inf')", "float('-inf')")
    pair_format = "{key}: {value}"

    @classmethod
    def valid_name(cls, name: str) -> bool:
        return name.isidentifier() and not keyword.iskeyword(name)

    @classmethod
    def code(cls, parameters: Mapping[str, Any], comment: str = "Parameters") -> str:
        return _black(super().code(parameters, comment))

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


def _black(code: str) -> str:
    """``code`` formatted by black, as papermill formats Python parameters when black is
    installed (quotes left as they are); unchanged without black."""
    try:
        black: Any = importlib.import_module("black")
    except ImportError:
        return code
    try:
        formatted: str = black.format_str(code, mode=black.Mode(string_normalization=False))
    except (ValueError, AttributeError) as exc:  # black's InvalidInput is a ValueError
        log.warning("black could not format the parameters, left as they are: %s", exc)
        return code
    return formatted


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


class BashTranslator(Translator):
    """Shell variables: strings quoted for the shell, ``true``/``false``, lists as
    arrays, ``None`` as the empty string; a dict has no bash form."""

    language = "bash"
    assign_format = "{name}={value}"
    name_kind = "a shell variable name"
    null = ""
    list_format, separator = "({})", " "

    @classmethod
    def string(cls, value: Any) -> str:
        return shlex.quote(str(value))


class RTranslator(Translator):
    """R values: ``NULL``, ``TRUE``/``FALSE``, lists and named lists (``list("k" = v)``),
    strings double-quoted as Python's; a leading ``_`` is dropped from a name (R does not
    allow it), as papermill does. Where papermill's text would not give the value:
    ``\\u00XX`` for its ``\\xXX`` (a raw byte to R, not the character, and not to be
    mixed with ``\\u``), and ``NaN``, ``Inf`` and ``-Inf`` (papermill writes ``nan``
    and ``inf``, which R does not know)."""

    language = "R"
    name_pattern = re.compile(r"[A-Za-z.][A-Za-z0-9._]*\Z")
    name_kind = "an R name"
    null = "NULL"
    true, false = "TRUE", "FALSE"
    non_finite = ("NaN", "Inf", "-Inf")
    byte_escapes = False
    list_format = dict_format = "list({})"
    pair_format = "{key} = {value}"

    @classmethod
    def target(cls, name: str) -> str:
        return name.lstrip("_")


class JuliaTranslator(Translator):
    """Julia values: ``nothing``, ``true``/``false``, vectors, ``Dict("k" => v)``,
    strings double-quoted as Python's. Where papermill's text would not give the value:
    ``$`` escaped (papermill leaves it, and Julia would interpolate it), ``\\u00XX``
    for its ``\\xXX`` (a raw byte to Julia, not the character), ``NaN``, ``Inf`` and
    ``-Inf`` (papermill's ``nan`` and ``inf`` are not Julia's names)."""

    language = "julia"
    name_pattern = re.compile(r"[A-Za-z_][A-Za-z0-9_!]*\Z")
    name_kind = "a Julia name"
    null = "nothing"
    non_finite = ("NaN", "Inf", "-Inf")
    byte_escapes = False
    pair_format, dict_format = "{key} => {value}", "Dict({})"

    @classmethod
    def string(cls, value: Any) -> str:
        return super().string(value).replace("$", "\\$")


class ScalaTranslator(Translator):
    """Scala values (also for ``sparkkernel``): ``val`` definitions, ``Seq(...)``,
    ``Map("k" -> v)``, ``None``, ``L`` on integers past 32 bits. Strings as
    papermill's but with ``\\u`` escapes where papermill writes ``\\x`` or ``\\U``,
    which Scala does not have; ``Double.NaN`` and ``Double.PositiveInfinity`` where
    papermill writes ``nan`` and ``inf``."""

    language = "scala"
    comment_format = "// {}"
    assign_format = "val {name} = {value}"
    name_kind = "a Scala name"
    non_finite = ("Double.NaN", "Double.PositiveInfinity", "Double.NegativeInfinity")
    long_suffix = True
    byte_escapes, surrogates = False, True
    list_format = "Seq({})"
    pair_format, dict_format = "{key} -> {value}", "Map({})"


class CSharpTranslator(Translator):
    """C# values (.NET Interactive): ``var`` statements, ``new [] { ... }``,
    ``new Dictionary<string,Object>{ { "k" , v } }``, ``L`` on integers past 32 bits;
    ``None`` is refused (papermill has no C# form for it either). Strings as papermill's
    but with ``\\u00XX`` where papermill writes ``\\xXX`` (C# would read up to four hex
    digits there); ``double.NaN`` and ``double.PositiveInfinity`` where papermill
    writes ``nan`` and ``inf``."""

    language = "C#"
    comment_format = "// {}"
    assign_format = "var {name} = {value};"
    name_kind = "a C# name"
    null = None
    non_finite = ("double.NaN", "double.PositiveInfinity", "double.NegativeInfinity")
    long_suffix = True
    byte_escapes = False
    list_format = "new [] {{ {} }}"
    pair_format = "{{ {key} , {value} }}"
    dict_format = "new Dictionary<string,Object>{{ {} }}"


class FSharpTranslator(Translator):
    """F# values (.NET Interactive): ``let`` bindings, ``[ a; b ]``, maps built from
    ``IComparable`` pairs, ``None``, ``L`` on integers past 32 bits; strings exactly as
    papermill's (F# reads Python's escapes); ``infinity`` and ``-infinity`` where
    papermill writes ``inf``."""

    language = "F#"
    comment_format = "(* {} *)"
    assign_format = "let {name} = {value}"
    name_pattern = re.compile(r"[A-Za-z_][A-Za-z0-9_']*\Z")
    name_kind = "an F# name"
    non_finite = ("nan", "infinity", "-infinity")
    long_suffix = True
    list_format, separator = "[ {} ]", "; "
    pair_format = "({key}, {value} :> IComparable)"
    dict_format, pair_separator = "[ {} ] |> Map.ofList", "; "


_POWERSHELL_ESCAPES = {
    "`": "``",
    "$": "`$",
    '"': '`"',
    # PowerShell ends a double-quoted string at typographic double quotes too.
    "\u201c": "`\u201c",
    "\u201d": "`\u201d",
    "\u201e": "`\u201e",
    "\n": "`n",
    "\r": "`r",
    "\t": "`t",
    "\0": "`0",
}


class PowershellTranslator(Translator):
    """PowerShell values (.NET Interactive): ``$name = ...``, ``$True``/``$False``,
    ``$Null``, ``@(...)``, ``@{"k" = v}``, ``[double]::NaN``. Strings double-quoted
    with PowerShell's backtick escapes: papermill's backslash escapes are plain text to
    PowerShell (``"a\\nb"`` would keep the backslash) and it leaves ``$`` to be
    interpolated; text that needs no escape is written as papermill writes it."""

    language = "PowerShell"
    assign_format = "${name} = {value}"
    name_pattern = re.compile(r"\w+\Z")
    name_kind = "a PowerShell variable name"
    null = "$Null"
    true, false = "$True", "$False"
    non_finite = ("[double]::NaN", "[double]::PositiveInfinity", "[double]::NegativeInfinity")
    list_format = "@({})"
    pair_format, dict_format, pair_separator = "{key} = {value}", "@{{{}}}", "\n "

    @classmethod
    def string(cls, value: Any) -> str:
        escaped = "".join(map(_powershell_char, str(value)))
        return f'"{escaped}"'


def _control(char: str) -> bool:
    """An ASCII control character."""
    return ord(char) < 0x20 or char == "\x7f"


def _powershell_char(char: str) -> str:
    if char in _POWERSHELL_ESCAPES:
        return _POWERSHELL_ESCAPES[char]
    if _control(char):  # not every one has a backtick escape in every version
        return f"$([char]{ord(char)})"
    return char


class MatlabTranslator(Translator):
    """MATLAB values: statements ending in ``;``, ``NaN`` for ``None``, cell arrays
    ``{a, b}``, ``containers.Map({'k'}, {v})``. Strings double-quoted with ``""`` for a
    quote, as papermill writes them, but without its backslash escapes, which MATLAB
    reads as text: a control character is joined on with ``char(N)``
    (``"a" + char(10) + "b"``), other text is written as it is."""

    language = "matlab"
    comment_format = "% {}"
    assign_format = "{name} = {value};"
    name_pattern = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
    name_kind = "a MATLAB name"
    null = "NaN"
    list_format = "{{{}}}"

    @classmethod
    def string(cls, value: Any) -> str:
        pieces = _matlab_pieces(str(value), '"')
        if pieces[0].startswith("char("):  # char + char would add numbers
            pieces.insert(0, '""')
        return " + ".join(pieces)

    @classmethod
    def key(cls, value: Any) -> str:
        """A key as a char vector (``'k'``, or ``['a' char(10) 'b']``), as papermill
        writes keys."""
        pieces = _matlab_pieces(str(value), "'")
        return pieces[0] if len(pieces) == 1 else "[" + " ".join(pieces) + "]"

    @classmethod
    def mapping(cls, name: str, items: list[tuple[str, str]]) -> str:
        keys = ", ".join(key for key, _ in items)
        values = ", ".join(value for _, value in items)
        return f"containers.Map({{{keys}}}, {{{values}}})"


def _matlab_pieces(text: str, quote: str) -> list[str]:
    """``text`` as MATLAB literals quoted with ``quote`` (doubled inside) and
    ``char(N)`` for each control character: the pieces to join."""
    pieces: list[str] = []
    run: list[str] = []
    for char in text:
        if _control(char):
            if run:
                pieces.append(quote + "".join(run) + quote)
                run = []
            pieces.append(f"char({ord(char)})")
        else:
            run.append(quote * 2 if char == quote else char)
    if run or not pieces:
        pieces.append(quote + "".join(run) + quote)
    return pieces


TRANSLATORS: dict[str, type[Translator]] = {
    # papermill's, by kernel name or language
    "python": PythonTranslator,
    "R": RTranslator,
    "scala": ScalaTranslator,
    "julia": JuliaTranslator,
    "matlab": MatlabTranslator,
    ".net-csharp": CSharpTranslator,
    ".net-fsharp": FSharpTranslator,
    ".net-powershell": PowershellTranslator,
    "pysparkkernel": PythonTranslator,
    "sparkkernel": ScalaTranslator,
    "sparkrkernel": RTranslator,
    "bash": BashTranslator,
    # kernelwire's: IRkernel's lower-case names, .NET Interactive's language names
    "r": RTranslator,
    "ir": RTranslator,
    "C#": CSharpTranslator,
    "F#": FSharpTranslator,
    "PowerShell": PowershellTranslator,
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


ERROR_MARKER_TAG = "papermill-error-cell-tag"
"""The tag of the marker cells :func:`add_error_markers` writes (papermill's: its tools,
and its own next run, find and drop them by it)."""
ERROR_ANCHOR = "papermill-error-cell"
"""The HTML id of the marker before the failed cell, which the top marker links to."""
_MARKER_STYLE = "color:red; font-size:2em;"


def add_error_markers(nb: NotebookNode, cell_index: int) -> NotebookNode:
    """Mark the cell whose error stopped a run, as papermill marks it: a markdown cell at
    the top linking to an anchor in a markdown cell right before the failed cell, both
    tagged :data:`ERROR_MARKER_TAG`. ``nb`` is changed in place and returned."""
    count = nb.cells[cell_index].get("execution_count")
    label = f"In [{count}]" if count is not None else f"cell {cell_index}"
    # The new cells get ids, which came with format 4.5 (as in inject).
    nbformat.v4.upgrade(nb)  # type: ignore[no-untyped-call]
    top = nbformat.v4.new_markdown_cell(  # type: ignore[no-untyped-call]
        f'<span style="{_MARKER_STYLE}">This run stopped on an error in '
        f'<a href="#{ERROR_ANCHOR}">{label}</a>.</span>'
    )
    anchor = nbformat.v4.new_markdown_cell(  # type: ignore[no-untyped-call]
        f'<span id="{ERROR_ANCHOR}" style="{_MARKER_STYLE}">'
        "The run stopped on the error in the cell below.</span>"
    )
    for cell in (top, anchor):
        cell.metadata["tags"] = [ERROR_MARKER_TAG]
    nb.cells.insert(cell_index, anchor)
    nb.cells.insert(0, top)
    return nb


def remove_error_markers(nb: NotebookNode) -> NotebookNode:
    """Drop the marker cells an earlier run added (see :func:`add_error_markers`), as
    papermill drops them before it runs a notebook; ``nb`` is changed in place and
    returned."""
    nb.cells = [
        cell
        for cell in nb.cells
        if ERROR_MARKER_TAG not in cell.get("metadata", {}).get("tags", [])
    ]
    return nb
