"""Kernel-spec argv templating: jupyter_client's names, everything else as written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kernelwire import KernelSpec, start_kernel

pytestmark = pytest.mark.usefixtures("no_leaks")


def spec_with(argv: tuple[str, ...], resource_dir: str = "/specs/k") -> KernelSpec:
    return KernelSpec(
        name="templated",
        argv=argv,
        display_name="Templated",
        language="python",
        resource_dir=resource_dir,
    )


def test_the_names_jupyter_client_substitutes(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "kernel.json")
    spec = spec_with(("kern", "-f", "{connection_file}", "--res={resource_dir}", "{prefix}/x"))
    argv = spec.command(str(link), kernel_id="abc")
    # The connection file by its real path, as jupyter_client passes it.
    assert argv == [
        "kern",
        "-f",
        str(tmp_path / "kernel.json"),
        "--res=/specs/k",
        f"{sys.prefix}/x",
    ]


def test_anything_else_in_braces_is_left_as_written() -> None:
    argv = (
        "kern",
        '--config={"a": 1}',
        "{",
        "}",
        "{}",
        "{unknown}",
        "{connection_file.__class__.__name__}",
        "{connection_file!r}",
        "{connection_file:>40}",
        "{0}",
        "{{connection_file}}",
    )
    got = spec_with(argv).command("/run/kernel.json")
    assert got[1:10] == list(argv[1:10])
    assert got[10] == "{/run/kernel.json}"  # no str.format escaping: the inner name is a name


def test_extra_arguments_and_launch_names_are_templated_too() -> None:
    spec = spec_with(("kern",))
    argv = spec.command(
        "/run/kernel.json",
        ["--id={kernel_id}", "--in={cwd}", "--file={connection_file}", "{nope}"],
        kernel_id="k-1",
        cwd="/work",
    )
    assert argv == ["kern", "--id=k-1", "--in=/work", "--file=/run/kernel.json", "{nope}"]


def test_a_spec_with_braces_in_its_argv_launches(tmp_path: Path) -> None:
    """A real ipykernel, launched through a spec whose argv holds ``{prefix}``, a JSON
    literal and a lone brace (jupyter_client launches these; str.format raised)."""
    record = tmp_path / "argv.json"
    launch = (
        "import json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "connection_file = sys.argv[1]\n"
        "sys.argv[1:] = ['-f', connection_file]\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n"
    )
    spec = spec_with(
        (sys.executable, "-c", launch, "{connection_file}", "{prefix}", '{"a": 1}', "{"),
        resource_dir=str(tmp_path),
    )
    with start_kernel(spec, cwd=str(tmp_path)) as kernel:
        assert kernel.run("6 * 7").text == "42"
        assert kernel.connection_file is not None
        connection_file = os.path.realpath(kernel.connection_file)
    assert json.loads(record.read_text()) == [connection_file, sys.prefix, '{"a": 1}', "{"]
