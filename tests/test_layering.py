"""Imports go one way (shared/DESIGN.md): model <- runner <- control; model <- client <- notebook,
server, cli.

The package's modules are read with ``ast`` (nothing is imported), so a forbidden import fails
here even when it sits inside a function that no other test calls.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jupyter_deploy"
ECHO = PACKAGE.parent / "notebooks" / "models" / "echo"

SERVER_SIDE = ("jupyter_deploy.runner", "jupyter_deploy.control")
UI = ("jupyter_deploy.notebook", "jupyter_deploy.server")
#: The front ends: they reach the server side only through the client (over gRPC) and load model
#: folders through the SDK (``jupyter_deploy.model``).
FRONT_END_FILES = ("client/", "notebook/", "server/", "gateway/", "cli.py", "_cli_platform.py", "local.py")
FRONT_END_MODULES = ("jupyter_deploy.client", *UI, "jupyter_deploy.gateway", "jupyter_deploy.cli",
                     "jupyter_deploy._cli_platform", "jupyter_deploy.local")

#: (module, function the import sits in, module imported): the only imports allowed past a rule.
ALLOWED = {
    # `jupyter-deploy serve` runs the control plane daemon in the foreground: starting the
    # daemon is that command's whole job.
    ("jupyter_deploy.cli", "cmd_serve", "jupyter_deploy.control.daemon"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, str]]:
    """``(function the import sits in, or "", absolute module imported)`` for each import in a file.

    ``from X import name`` is an import of ``X``, and of ``X.name`` too where that is a module.
    """
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend((function, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.append((function, base))
                found.extend((function, f"{base}.{alias.name}") for alias in child.names
                             if _is_module(f"{base}.{alias.name}"))
            visit(child, function)

    visit(ast.parse(path.read_text(), str(path)), "")
    return found


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in files:
        module = _module_name(path)
        for function, imported in _imports(path):
            hit = any(imported == f or imported.startswith(f + ".") for f in forbidden)
            if hit and (module, function, imported) not in ALLOWED:
                where = f"{module}" + (f" ({function})" if function else "")
                out.append(f"{where} imports {imported}")
    return sorted(set(out))


def _files(*relative: str) -> list[Path]:
    files: list[Path] = []
    for rel in relative:
        target = PACKAGE / rel
        files += sorted(target.rglob("*.py")) if rel.endswith("/") else [target]
    assert files and all(f.is_file() for f in files), relative
    return files


def test_imports_are_resolved_as_python_resolves_them() -> None:
    imports = _imports(PACKAGE / "runner" / "_service.py")
    assert ("", "jupyter_deploy.model._host") in imports
    assert ("", "jupyter_deploy.model._host.ModelHost") not in imports
    assert ("", "jupyter_deploy.runner._pump") in imports
    assert ("cmd_serve", "jupyter_deploy.control.daemon") in _imports(PACKAGE / "cli.py")


def test_front_ends_never_import_the_runner_or_the_control_plane() -> None:
    assert _violations(_files(*FRONT_END_FILES), SERVER_SIDE) == []


def test_the_sdk_imports_nothing_above_it() -> None:
    # With the shared modules its loader imports: the folder format, config.yaml, checkpoints.
    sdk = _files("model/", "folder.py", "config.py", "checkpoints.py", "errors.py")
    assert _violations(sdk, (*SERVER_SIDE, *FRONT_END_MODULES)) == []


def test_packaging_and_the_formats_sit_with_the_sdk() -> None:
    # package() and the format converters write model folders (the client calls the converters),
    # and the model.py files they write import their runtimes on a replica: neither may pull in
    # the client, a UI or the server side.
    assert _violations(_files("packaging/", "formats/"), (*SERVER_SIDE, *FRONT_END_MODULES)) == []


def test_the_client_knows_no_ui() -> None:
    assert _violations(_files("client/"), UI) == []


def test_the_server_side_imports_no_front_end_and_a_runner_not_the_control_plane() -> None:
    assert _violations(_files("runner/"), ("jupyter_deploy.control", *FRONT_END_MODULES)) == []
    assert _violations(_files("control/"), FRONT_END_MODULES) == []


def test_loading_a_model_in_a_kernel_never_imports_the_runner() -> None:
    # What the kernel, `run-locally` and an upload's signature reading go through, imports
    # followed all the way down.
    code = (
        "import sys\n"
        "import jupyter_deploy.cli, jupyter_deploy.client\n"
        "from jupyter_deploy import load_local\n"
        "from jupyter_deploy.client._upload import _describe_main\n"
        f"assert load_local({str(ECHO)!r}).predict('hi') == 'echo: hi'\n"
        f"_describe_main({str(ECHO)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jupyter_deploy.runner', "
        "'jupyter_deploy.control'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_only_the_ray_driver_and_the_actor_import_ray() -> None:
    # A Ray driver is ended by Ray when its cluster goes away, and Ray costs a second to import:
    # the daemon talks to one in a process of its own (_ray_agent), and a replica's actor (which
    # Ray itself imports on a node) needs Ray only inside its constructor.
    everything = sorted(PACKAGE.rglob("*.py"))
    allowed = {PACKAGE / "control" / "_backends" / "_ray_agent.py"}
    assert _violations([f for f in everything if f not in allowed], ("ray",)) == [
        "jupyter_deploy.runner._ray_actor (__init__) imports ray"]


def test_importing_jupyter_deploy_or_starting_the_daemon_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "import jupyter_deploy, jupyter_deploy.client, jupyter_deploy.cli\n"
        "import jupyter_deploy.control.daemon, jupyter_deploy.control._plane\n"
        "from jupyter_deploy.control._backends import RayBackend\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
