"""Notebook parameters the papermill way, checked against papermill itself: its
translators, its parameter injection and inspection, its reader, and a papermill run of
the same notebook with the same parameters."""

from __future__ import annotations

import base64
import copy
import json
import keyword
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelwire import notebook
from kernelwire import parameters as params
from kernelwire.errors import CellExecutionError, NoParameterTranslator, ParameterError

pytestmark = pytest.mark.usefixtures("no_leaks")

NOTEBOOK = Path(__file__).parent / "notebooks" / "parameters.ipynb"

papermill = pytest.importorskip("papermill")
from papermill import translators as pm_translators  # noqa: E402


def kernelwire(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelwire.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def injected(nb: Any) -> list[int]:
    return [
        i for i, cell in enumerate(nb.cells) if params.INJECTED_TAG in cell.metadata.get("tags", [])
    ]


def texts(cell: Any) -> list[str]:
    """A cell's streams and plain-text results, in order."""
    return [o.get("text") or o.get("data", {}).get("text/plain", "") for o in cell.outputs]


# -- translators: the text papermill writes ------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n)
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(names, values, max_size=5))
def test_python_code_is_papermills_and_evaluates_to_the_values(given: dict[str, Any]) -> None:
    code = params.PythonTranslator.code(given)
    assert code == pm_translators.PythonTranslator.codify(given)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    for name, value in given.items():
        assert same(namespace[name], value), (name, value)


@pytest.fixture(params=["black installed", "black hidden"])
def black(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Runs a test with black importable (skipped when it is not installed), and again
    with ``import black`` failing as it does where black is not installed."""
    if request.param == "black hidden":
        monkeypatch.setitem(sys.modules, "black", None)  # import raises ImportError
        return False
    pytest.importorskip("black")
    return True


def test_python_parameters_are_formatted_by_black_as_papermill_formats_them(black: bool) -> None:
    values = {
        "config": {
            "learning_rate": 0.001,
            "layers": [512, 256, 128, 64],
            "name": "a longer name, past 88 columns",
        },
        "empty": [],
        "quote": "it's",
    }
    ours = params.PythonTranslator.code(values)
    assert ours == pm_translators.PythonTranslator.codify(values)
    namespace: dict[str, Any] = {}
    exec(ours, namespace)
    assert {name: namespace[name] for name in values} == values
    one_line = (
        '# Parameters\nconfig = {"learning_rate": 0.001, "layers": [512, 256, 128, 64], '
        '"name": "a longer name, past 88 columns"}\nempty = []\nquote = "it\'s"\n'
    )
    if black:  # wrapped at 88 columns, with black's trailing comma; quotes kept
        assert ours.splitlines()[:3] == [
            "# Parameters",
            "config = {",
            '    "learning_rate": 0.001,',
        ]
        assert ours.endswith('\nempty = []\nquote = "it\'s"\n')
    else:
        assert ours == one_line


def same(got: Any, want: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, list):
        return len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    return type(got) is type(want) and bool(got == want)


bash_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(names, bash_values, max_size=5))
def test_bash_code_is_papermills(given: dict[str, Any]) -> None:
    assert params.BashTranslator.code(given) == pm_translators.BashTranslator.codify(given)


r_names = names.filter(lambda n: n.lstrip("_")[:1].isalpha())  # valid once papermill strips _
finite_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
BYTE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\x([0-9a-f]{2})")


def unicode_escapes(papermills: str) -> str:
    r"""papermill's text with each ``\xXX`` escape (not an escaped backslash followed by
    ``x``) written ``\u00XX``, as kernelwire writes them for R, Julia, Scala and C#."""
    return BYTE_ESCAPE.sub(r"\1\\u00\2", papermills)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(r_names, finite_values, max_size=5))
def test_r_code_is_papermills_but_for_byte_escapes(given: dict[str, Any]) -> None:
    ours = params.RTranslator.code(given)
    assert ours == unicode_escapes(pm_translators.RTranslator.codify(given))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(names, finite_values, max_size=5))
def test_julia_code_is_papermills_but_for_dollar_signs_and_byte_escapes(
    given: dict[str, Any],
) -> None:
    """``$`` in a string is escaped: papermill's ``"cost $5"`` would make Julia
    interpolate a variable named 5."""
    ours = params.JuliaTranslator.code(given)
    theirs = pm_translators.JuliaTranslator.codify(given)
    assert ours.replace("\\$", "$") == unicode_escapes(theirs)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(names, finite_values, max_size=5))
def test_fsharp_code_is_papermills_for_finite_numbers(given: dict[str, Any]) -> None:
    ours = params.FSharpTranslator.code(given)
    assert ours == pm_translators.FSharpTranslator.codify(given)


# Text every language writes as papermill does: printable ASCII but for the characters
# that papermill escapes wrongly in some language (\ in MATLAB and PowerShell, $ and `
# in PowerShell and Julia).
plain_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\$`")
)
plain_values = st.recursive(
    st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | plain_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(plain_text, inner, max_size=4),
    max_leaves=12,
)
letter_names = names.filter(lambda n: n[0].isalpha())  # MATLAB's names begin so
LANGUAGES = ["python", "R", "julia", "scala", "matlab", ".net-csharp", ".net-fsharp",
             ".net-powershell", "bash"]  # fmt: skip
"""papermill's translators, by the kernel name or language it registers them under."""


@pytest.mark.parametrize("language", LANGUAGES)
@settings(max_examples=40, deadline=None)
@given(given=st.dictionaries(letter_names, plain_values, max_size=4))
def test_plain_values_are_written_as_papermill_writes_them(
    language: str, given: dict[str, Any]
) -> None:
    theirs = pm_translators.papermill_translators.find_translator(language, language)
    if language == "bash":  # papermill has no bash form for a mapping either
        given = {k: v for k, v in given.items() if not holds_dict(v)}
    ours = params.translator_for(language, language).code(given)
    assert ours == theirs.codify(given)


def holds_dict(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(map(holds_dict, value)))


VALUES: dict[str, Any] = {
    "quotes and newlines": 'it\'s "quoted"\nline\ttab \\ back',
    "plain text": "hello, world",
    "non-ASCII": "naïve café 🚀",
    "control character": "bell\x07",
    "dollar and backtick": "cost $5 `x`",
    "int": 42,
    "negative int": -7,
    "long int": 2**40,
    "float": 1.5,
    "exponent": 1e20,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "True": True,
    "False": False,
    "None": None,
    "list": [1, "a", 2.5],
    "dict": {"k": 1, "other": "v"},
    "nested": {"outer": [1, {"inner": [True, "x"]}], "deep": {"n": 2}},
    "nested None": [None, {"k": None}],
}
REFUSED = "refused"
DIFFERENT: dict[str, dict[str, str]] = {
    # Where papermill's code would not give the value, each for the reason given.
    "R": {
        # \xXX is a raw byte in R, not the character (and cannot be mixed with \u).
        "non-ASCII": 'x = "na\\u00efve caf\\u00e9 \\U0001f680"',
        "control character": 'x = "bell\\u0007"',
        # nan and inf are no names in R.
        "nan": "x = NaN",
        "inf": "x = Inf",
        "-inf": "x = -Inf",
    },
    "julia": {
        "non-ASCII": 'x = "na\\u00efve caf\\u00e9 \\U0001f680"',  # \xXX: a raw byte
        "control character": 'x = "bell\\u0007"',
        "dollar and backtick": 'x = "cost \\$5 `x`"',  # Julia interpolates $
        "nan": "x = NaN",
        "inf": "x = Inf",
        "-inf": "x = -Inf",
    },
    "scala": {
        # Scala has neither \x nor \U escapes.
        "non-ASCII": 'val x = "na\\u00efve caf\\u00e9 \\ud83d\\ude80"',
        "control character": 'val x = "bell\\u0007"',
        "nan": "val x = Double.NaN",
        "inf": "val x = Double.PositiveInfinity",
        "-inf": "val x = Double.NegativeInfinity",
    },
    "matlab": {
        # MATLAB reads no backslash escapes in a string: a control character is joined on.
        "quotes and newlines": (
            'x = "it\'s ""quoted""" + char(10) + "line" + char(9) + "tab \\ back";'
        ),
        "non-ASCII": 'x = "naïve café 🚀";',
        "control character": 'x = "bell" + char(7);',
    },
    ".net-csharp": {
        # C#'s \x takes up to four hex digits: "\xe9a" would be one character.
        "non-ASCII": 'var x = "na\\u00efve caf\\u00e9 \\U0001f680";',
        "control character": 'var x = "bell\\u0007";',
        "nan": "var x = double.NaN;",
        "inf": "var x = double.PositiveInfinity;",
        "-inf": "var x = double.NegativeInfinity;",
        "None": REFUSED,  # as papermill refuses it
        "nested None": REFUSED,
    },
    ".net-fsharp": {"inf": "let x = infinity", "-inf": "let x = -infinity"},
    ".net-powershell": {
        # PowerShell's escapes are backticks; a backslash is text; $ interpolates.
        "quotes and newlines": '$x = "it\'s `"quoted`"`nline`ttab \\ back"',
        "non-ASCII": '$x = "naïve café 🚀"',
        "control character": '$x = "bell$([char]7)"',
        "dollar and backtick": '$x = "cost `$5 ``x``"',
    },
    "bash": {"dict": REFUSED, "nested": REFUSED, "nested None": REFUSED},  # as papermill
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_value_as_papermill_writes_it_or_as_the_language_reads_it(language: str) -> None:
    """Every kind of value, for every language papermill supports: papermill's own
    translator's text, but for the differences listed (and why) in DIFFERENT."""
    translator = params.translator_for(language, language)
    theirs = pm_translators.papermill_translators.find_translator(language, language)
    expected_differences = DIFFERENT.get(language, {})
    for label, value in VALUES.items():
        different = expected_differences.get(label)
        if different == REFUSED:
            with pytest.raises(NotImplementedError):
                theirs.codify({"x": value})
            with pytest.raises(ParameterError, match=r"^parameter 'x': a .* kernel cannot be"):
                translator.code({"x": value})
            continue
        ours = translator.code({"x": value})
        papermills = theirs.codify({"x": value})
        header = papermills.split("\n")[0]
        if different is None:
            assert ours == papermills, label
        else:
            assert ours == f"{header}\n{different}\n", label
            assert ours != papermills, label


def test_every_papermill_translator_has_ours() -> None:
    registered = pm_translators.papermill_translators._translators
    assert set(LANGUAGES) <= set(registered)
    for key, theirs in registered.items():
        ours = params.TRANSLATORS[key]
        assert ours.__name__.lower() == theirs.__name__.lower(), key


def test_julia_strings_keep_their_dollar_signs() -> None:
    assert (
        params.JuliaTranslator.code({"price": "cost $5"}) == '# Parameters\nprice = "cost \\$5"\n'
    )


def test_r_and_julia_notebooks_take_parameters_by_kernel_language() -> None:
    import nbformat

    for language, kernel in (("R", "ir"), ("julia", "julia-1.10")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": kernel, "language": language, "display_name": kernel}
        nb.metadata["language_info"] = {"name": language}
        nb.cells = [nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]})]
        assert "alpha = 0.5" in params.parameter_code(nb, {"alpha": 0.5})


def test_values_no_language_can_take_are_clear_errors() -> None:
    with pytest.raises(ParameterError, match="'cfg': a bash kernel cannot be given a mapping"):
        params.BashTranslator.code({"cfg": {"a": 1}})
    with pytest.raises(ParameterError, match="'class' is not a Python name"):
        params.PythonTranslator.code({"class": 1})
    with pytest.raises(ParameterError, match="'my var' is not a shell variable name"):
        params.BashTranslator.code({"my var": 1})
    with pytest.raises(ParameterError, match="'a-b' is not an R name"):
        params.RTranslator.code({"a-b": 1})
    with pytest.raises(ParameterError, match="'1x' is not a Julia name"):
        params.JuliaTranslator.code({"1x": 1})


@pytest.mark.parametrize(
    "text", ["True", "False", "None", "12", "-3", "1.5", "1e3", "nan", "inf", "0x10", "true", "a b"]
)
def test_p_values_are_read_as_papermill_reads_them(text: str) -> None:
    from papermill.cli import _resolve_type

    assert same(params.parse_value(text), _resolve_type(text))


def test_yaml_and_base64_as_papermill_reads_them() -> None:
    text = "when: 2024-01-02\nn: 3\nitems: [a, 1.5]\n"
    assert params.from_yaml(text, "-y") == {"when": "2024-01-02", "n": 3, "items": ["a", 1.5]}
    encoded = base64.b64encode(text.encode()).decode()
    assert params.from_base64(encoded) == params.from_yaml(text, "-y")
    assert params.from_yaml("", "-y") == {}
    with pytest.raises(ParameterError, match=r"-y: expected a mapping .* got list"):
        params.from_yaml("[1, 2]", "-y")
    with pytest.raises(ParameterError, match="-y: not valid YAML"):
        params.from_yaml("a: [1", "-y")
    with pytest.raises(ParameterError, match="not valid base64"):
        params.from_base64("not base64!")
    with pytest.raises(ParameterError, match=r"cannot read parameters file /no/such\.yaml"):
        params.from_yaml_file("/no/such.yaml")


# -- injection and inspection: where papermill puts the cell, what it reads -----------------


def papermill_injected(nb: Any, values: dict[str, Any]) -> Any:
    from papermill.parameterize import parameterize_notebook

    theirs = copy.deepcopy(nb)
    theirs.metadata.setdefault("papermill", {})
    for cell in theirs.cells:  # what papermill's reader adds, and its injection needs
        cell.metadata.setdefault("tags", [])
    return parameterize_notebook(theirs, values, kernel_name="python3", language="python")


def sources(nb: Any) -> list[tuple[str, list[str]]]:
    return [(cell.source, list(cell.metadata.get("tags", []))) for cell in nb.cells]


@pytest.mark.parametrize("layout", ["after-parameters", "no-parameters-cell", "re-run"])
def test_the_injected_cell_goes_where_papermill_puts_it(layout: str) -> None:
    nb = read(NOTEBOOK)
    if layout == "no-parameters-cell":
        nb.cells[1].metadata.tags = []
    if layout == "re-run":  # an earlier run's cell is replaced where it is, even if moved
        params.inject(nb, {"alpha": 1})
        nb.cells.append(nb.cells.pop(2))
    values = {"alpha": 0.5, "name": 'it\'s "quoted"\n'}
    ours = params.inject(copy.deepcopy(nb), values)
    assert sources(ours) == sources(papermill_injected(nb, values))
    assert len(injected(ours)) == 1
    where = {"after-parameters": 2, "no-parameters-cell": 0, "re-run": len(nb.cells) - 1}[layout]
    assert injected(ours) == [where]
    assert ours.cells[where].source == '# Parameters\nalpha = 0.5\nname = "it\'s \\"quoted\\"\\n"\n'
    assert ours.metadata.papermill.parameters == values


def test_an_older_notebook_is_upgraded_so_the_injected_cell_keeps_it_valid() -> None:
    nb = read(NOTEBOOK)
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    nbformat.validate(nb)
    params.inject(nb, {"alpha": 1})
    assert nb.nbformat_minor == 5 and all(cell.get("id") for cell in nb.cells)
    nbformat.validate(nb)


def test_inspection_is_papermills() -> None:
    from papermill import inspect_notebook

    ours = params.inspect(read(NOTEBOOK))
    assert ours is not None and [p.name for p in ours] == ["alpha", "name", "n", "flags", "opts"]
    assert {p.name: p._asdict() for p in ours} == inspect_notebook(str(NOTEBOOK))
    assert ours[0] == params.Parameter("alpha", "None", "0.1", "the learning rate")
    assert ours[2].inferred_type_name == "int" and ours[1].default == '"world"'


def test_inspection_reads_what_a_regular_expression_misreads() -> None:
    cell = (
        "%matplotlib inline\n"
        'url = "http://x/#anchor"  # where to fetch\n'
        "opts = dict(a=1, b=2)\n"
        "items = [\n    1,  # one\n    2,\n]  # the items\n"
        "size: 'int' = 3\n"
        "if True:\n    hidden = 1\n"
    )
    found = params.PythonTranslator.inspect(cell)
    assert found == [
        params.Parameter("url", "None", '"http://x/#anchor"', "where to fetch"),
        params.Parameter("opts", "None", "dict(a=1, b=2)", ""),
        params.Parameter("size", "int", "3", ""),
    ]
    found = params.PythonTranslator.inspect(cell.replace("%matplotlib inline\n", ""))
    assert [p.name for p in found] == ["url", "opts", "items", "size"]
    assert found[2] == params.Parameter("items", "None", "[ 1, # one 2, ]", "the items")


def haskell_notebook() -> Any:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})]
    )
    nb.metadata.kernelspec = {"name": "ihaskell", "display_name": "Haskell", "language": "haskell"}
    return nb


def test_a_language_without_a_translator_is_named_before_any_kernel_starts(
    tmp_path: Path,
) -> None:
    """Haskell: a language neither papermill nor kernelwire has a translator for."""
    with pytest.raises(papermill.PapermillException, match="No parameter translator"):
        pm_translators.translate_parameters("ihaskell", "haskell", {"x": 2})
    with pytest.raises(NoParameterTranslator) as excinfo:
        notebook.execute(haskell_notebook(), parameters={"x": 2})  # no such kernel: never started
    assert excinfo.value.language == "haskell" and excinfo.value.kernel_name == "ihaskell"
    assert "haskell-language notebook (kernel 'ihaskell')" in str(excinfo.value)
    assert "C#, F#, PowerShell, R, bash, julia, matlab, python, scala" in str(excinfo.value)
    (runs,) = notebook.execute_many([haskell_notebook()], parameters={"x": 2})
    assert isinstance(runs.error, NoParameterTranslator)
    source = tmp_path / "haskell.ipynb"
    nbformat.write(haskell_notebook(), source)
    done = kernelwire("notebook", "run", str(source), "-p", "x", "2")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "kernelwire: cannot inject parameters into a haskell-language notebook (kernel 'ihaskell')"
    )


def test_scala_matlab_and_dotnet_notebooks_take_parameters_by_kernel_name_or_language() -> None:
    for kernel, language, expected in (
        ("spylon-kernel", "scala", "val alpha = 0.5"),
        ("sparkkernel", "scala", "val alpha = 0.5"),
        ("matlab", "matlab", "alpha = 0.5;"),
        (".net-csharp", "C#", "var alpha = 0.5;"),
        (".net-fsharp", "F#", "let alpha = 0.5"),
        (".net-powershell", "PowerShell", "$alpha = 0.5"),
        ("sparkrkernel", "", "alpha = 0.5"),
    ):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": kernel, "language": language, "display_name": kernel}
        nb.cells = [nbformat.v4.new_code_cell("", metadata={"tags": ["parameters"]})]
        code = params.inject(nb, {"alpha": 0.5}).cells[1].source
        assert code.splitlines()[1] == expected, kernel


# -- the CLI, no kernel: --help-notebook and bad input ---------------------------------------


def test_help_notebook_lists_what_papermill_infers(tmp_path: Path) -> None:
    done = kernelwire("notebook", "run", str(NOTEBOOK), "--help-notebook")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Parameters of {NOTEBOOK} (override with -p NAME VALUE):",
        "  alpha  unknown type = 0.1  # the learning rate",
        '  name   str = "world"',
        "  n      int = 3",
        "  flags  unknown type = [1, 2]",
        '  opts   unknown type = {"deep": True}',
    ]
    assert not NOTEBOOK.with_suffix(".executed.ipynb").exists()  # nothing ran
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), plain)
    none = kernelwire("notebook", "run", str(plain), "--help-notebook")
    assert none.returncode == 1 and "no cell tagged 'parameters'" in none.stdout
    assert not (tmp_path / "plain.executed.ipynb").exists()


def test_bad_parameter_options_are_one_line_errors(tmp_path: Path) -> None:
    for option, expected in (
        (["-y", "[1"], "-y: not valid YAML"),
        (["-b", "%%%"], "not valid base64"),
        (["-f", str(tmp_path / "none.yaml")], "cannot read parameters file"),
        (["-p", "not a name", "1"], "'not a name' is not a Python name"),
    ):
        done = kernelwire("notebook", "run", str(NOTEBOOK), "-o", str(tmp_path / "o"), *option)
        assert done.returncode == 2, (option, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "o").exists()


# -- real runs ------------------------------------------------------------------------------


def test_every_option_reaches_the_kernel_in_papermills_order(tmp_path: Path) -> None:
    """-b, then -f, then -y, then -p, then -r, whatever their order on the line."""
    (tmp_path / "p.yaml").write_text("name: from-file\nn: 10\nflags: [f]\n")
    encoded = base64.b64encode(b"name: from-base64\nalpha: 9.5\nopts: {b64: 1}\n").decode()
    out = tmp_path / "out.ipynb"
    done = kernelwire(
        "notebook", "run", str(NOTEBOOK), "-o", str(out),
        "-r", "n", "7",
        "-p", "name", "from-p",
        "-y", "flags: [y, 2]\nname: from-yaml",
        "-f", str(tmp_path / "p.yaml"),
        "-b", encoded,
        "-p", "alpha", "0.25",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    nb = read(out)
    (at,) = injected(nb)
    assert at == 2
    assert "".join(texts(nb.cells[3])) == "alpha=0.25 name='from-p' n='7'\n['y', 2] {'b64': 1}\n"
    assert nb.metadata.papermill.parameters == {
        "name": "from-p",
        "alpha": 0.25,
        "opts": {"b64": 1},
        "n": "7",
        "flags": ["y", 2],
    }
    assert nb.metadata.papermill.input_path == str(NOTEBOOK)
    assert nb.metadata.papermill.output_path == str(out)


def test_execute_overrides_defaults_and_a_rerun_replaces_the_injected_cell() -> None:
    nb = notebook.execute(NOTEBOOK, parameters={"alpha": 0.5, "name": "kernel"})
    (at,) = injected(nb)
    assert at == 2 and nb.cells[at].source == '# Parameters\nalpha = 0.5\nname = "kernel"\n'
    assert "".join(texts(nb.cells[3])).startswith("alpha=0.5 name='kernel' n=3\n")
    again = notebook.execute(nb, parameters={"alpha": 2})
    assert injected(again) == [2] and len(again.cells) == 5
    assert again.cells[2].source == "# Parameters\nalpha = 2\n"
    assert "".join(texts(again.cells[3])).startswith("alpha=2 name='world' n=3\n")
    # No parameters: nbclient's run, no papermill metadata on a fresh notebook.
    plain = notebook.execute(NOTEBOOK)
    assert "papermill" not in plain.metadata and not injected(plain)
    assert "".join(texts(plain.cells[2])).startswith("alpha=0.1 name='world' n=3\n")


def test_papermill_reads_the_metadata_back(tmp_path: Path) -> None:
    from papermill.execute import raise_for_execution_errors
    from papermill.iorw import load_notebook_node

    out = tmp_path / "out.ipynb"
    done = kernelwire("notebook", "run", str(NOTEBOOK), "-o", str(out), "-p", "alpha", "3")
    assert done.returncode == 0, done.stderr
    nb = load_notebook_node(str(out))
    section = nb.metadata.papermill
    assert section.parameters == {"alpha": 3}
    assert section.exception is None and section.duration >= 0
    assert section.start_time <= section.end_time
    assert {"default_parameters", "environment_variables", "version"} <= section.keys()
    assert [cell.metadata.papermill.status for cell in nb.cells] == ["completed"] * 5
    assert all(cell.metadata.papermill.duration >= 0 for cell in nb.cells[1:])
    # Nothing failed: papermill raises nothing.
    raise_for_execution_errors(nb, str(tmp_path / "marked.ipynb"))
    assert papermill.inspect_notebook(str(out))["alpha"]["default"] == "0.1"

    failing = read(NOTEBOOK)
    failing.cells.insert(3, nbformat.v4.new_code_cell("1 / 0"))
    with pytest.raises(CellExecutionError) as excinfo:
        notebook.execute(failing, parameters={})
    assert excinfo.value.cell_index == 3  # no parameters given: no cell injected
    assert failing.metadata.papermill.exception is True
    statuses = [cell.metadata.papermill.status for cell in failing.cells]
    assert statuses == ["completed", "completed", "completed", "failed", "pending"]
    assert failing.cells[3].metadata.papermill.exception is True
    with pytest.raises(papermill.PapermillExecutionError) as theirs:
        raise_for_execution_errors(copy.deepcopy(failing), str(tmp_path / "marked.ipynb"))
    assert theirs.value.cell_index == 3 and theirs.value.ename == "ZeroDivisionError"


def comparable(nb: Any) -> list[Any]:
    """Cells' sources, tags, counts, outputs (streams joined) and papermill statuses."""
    cells = []
    for cell in nb.cells:
        streams: dict[str, str] = {}
        others = []
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                streams[output["name"]] = streams.get(output["name"], "") + output["text"]
            else:
                others.append(dict(output))
        cells.append(
            (
                cell.source,
                [t for t in cell.metadata.get("tags", [])],
                cell.get("execution_count"),
                others,
                streams,
                cell.metadata.papermill.status,
            )
        )
    return cells


def test_same_notebook_as_papermill(tmp_path: Path) -> None:
    values = {"alpha": -1.5, "name": "naïve 🚀", "flags": [None, True], "opts": {"k": [1]}}
    theirs_path = tmp_path / "theirs.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(theirs_path),
        parameters=values,
        progress_bar=False,
        kernel_name="python3",
    )
    ours = notebook.execute(NOTEBOOK, parameters=values)
    theirs = read(theirs_path)
    assert comparable(ours) == comparable(theirs)
    for key in ("parameters", "default_parameters", "environment_variables", "exception"):
        assert ours.metadata.papermill[key] == theirs.metadata.papermill[key], key
    assert set(ours.metadata.papermill) == set(theirs.metadata.papermill)
    for mine, its in zip(ours.cells, theirs.cells, strict=True):
        assert set(mine.metadata.papermill) == set(its.metadata.papermill)


def test_bash_notebooks_take_parameters(bash_kernel_installed: str, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('greeting="hi"\ncount=1', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell('echo "$greeting x$count ${items[1]} [$none] $flag"'),
        ]
    )
    nb.metadata.kernelspec = {"name": "bash", "display_name": "Bash", "language": "bash"}
    source = tmp_path / "bash.ipynb"
    nbformat.write(nb, source)
    values = {"greeting": "it's a 'test' $HOME", "count": 3, "items": ["a b", 2], "none": None}
    out = tmp_path / "out.ipynb"
    done = kernelwire(
        "notebook", "run", str(source), "-o", str(out),
        "-y", json.dumps(values), "-p", "flag", "True",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ran = read(out)
    assert ran.cells[1].source == pm_translators.BashTranslator.codify({**values, "flag": True})
    assert texts(ran.cells[2]) == ["it's a 'test' $HOME x3 2 [] true\n"]
    help_text = kernelwire("notebook", "run", str(source), "--help-notebook")
    assert help_text.returncode == 0
    assert "its language's cells cannot be read" in help_text.stdout
