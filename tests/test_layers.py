"""The layers keep to their interfaces (read from the source with ``ast``; nothing runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import kernelwire

PACKAGE = Path(kernelwire.__file__).parent


def own_private_names(tree: ast.AST) -> set[str]:
    """Underscore names a module defines itself (methods, attributes set on ``self``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {name for name in names if name.startswith("_")}


def foreign_private_uses(source: str) -> list[str]:
    """``obj._name`` uses in ``source`` where ``_name`` belongs to another module's object."""
    tree = ast.parse(source)
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in own:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_sees_a_reach_into_a_client() -> None:
    source = "class K:\n    def f(self, c):\n        c._engine.heartbeat.paused = True\n"
    assert foreign_private_uses(source) == ["line 3: c._engine"]
    assert foreign_private_uses("class K:\n    def f(self):\n        self._x = 1\n") == []


def test_remote_and_lifecycle_use_only_public_interfaces_of_other_modules() -> None:
    files = [PACKAGE / "remote.py", *sorted((PACKAGE / "lifecycle").glob("*.py"))]
    offences = {
        str(path.relative_to(PACKAGE)): uses
        for path in files
        if (uses := foreign_private_uses(path.read_text(encoding="utf-8")))
    }
    assert offences == {}


ENGINE_INSIDES = {"router", "heartbeat", "transport", "core"}


def engine_insides(source: str) -> list[str]:
    """``….engine.router``-like uses: the engine's parts, not its public interface."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENGINE_INSIDES
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in ("engine", "_engine")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_remote_and_lifecycle_use_the_engines_interface_not_its_parts() -> None:
    assert engine_insides("client.engine.router.death = None") == ["line 1: client.engine.router"]
    files = [PACKAGE / "remote.py", *sorted((PACKAGE / "lifecycle").glob("*.py"))]
    offences = {
        str(path.relative_to(PACKAGE)): uses
        for path in files
        if (uses := engine_insides(path.read_text(encoding="utf-8")))
    }
    assert offences == {}


IO_MODULES = {
    "asyncio",
    "glob",
    "httpx",
    "jupyter_core",
    "selectors",
    "socket",
    "subprocess",
    "tempfile",
    "threading",
    "websockets",
    "zmq",
}


def imported_modules(source: str) -> set[str]:
    """Top-level names of the modules ``source`` imports anywhere (in functions too),
    with relative imports as written (``..errors``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or "").split(".")[0])
    return names


def test_the_protocol_package_imports_no_io_and_no_upper_layer() -> None:
    allowed_relative = {".", ".codec", ".jsonutil", ".message", ".requests", ".websocket"}
    allowed_relative |= {".connection", "..errors"}
    offences = {}
    for path in sorted((PACKAGE / "protocol").glob("*.py")):
        names = imported_modules(path.read_text(encoding="utf-8"))
        bad = {
            n for n in names if n in IO_MODULES or (n.startswith(".") and n not in allowed_relative)
        }
        if bad:
            offences[path.name] = sorted(bad)
    assert offences == {}


def test_every_exception_lives_in_errors_and_is_exported() -> None:
    import inspect

    import kernelwire.errors

    defined_elsewhere = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).endswith(("Error", "Exception", "KernelDied", "KernelTimeout"))
                for base in node.bases
            ):
                defined_elsewhere[node.name] = str(path.relative_to(PACKAGE))
    assert defined_elsewhere == {}
    errors = {
        name
        for name, value in vars(kernelwire.errors).items()
        if inspect.isclass(value) and issubclass(value, kernelwire.errors.KernelwireError)
    }
    assert errors - set(kernelwire.__all__) == set()
