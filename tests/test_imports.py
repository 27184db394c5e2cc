"""What importing jupyter_deploy costs: no heavy library at ``import jupyter_deploy`` or at
``%load_ext jupyter_deploy``, and every public name still there on first use (issue 18).

Each check runs in a fresh interpreter, since this test process has imported everything already.
Speed itself is measured by ``bench/import_bench.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

#: Libraries that neither `import jupyter_deploy` nor `%load_ext jupyter_deploy` may load.
HEAVY = ("grpc", "google.protobuf", "pydantic", "ipywidgets", "yaml", "numpy", "pandas", "PIL")


def _run(code: str) -> dict:
    """The JSON object ``code`` prints last, run in a fresh interpreter."""
    prelude = (
        "import json, sys\n"
        "def heavy():\n"
        f"    return sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r}))\n"
    )
    with tempfile.TemporaryDirectory() as home:  # nothing here may start or find a daemon
        env = {**os.environ, "JUPYTER_DEPLOY_HOME": home}
        out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                             timeout=120, check=False, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_jupyter_deploy_loads_no_heavy_library() -> None:
    got = _run(
        "import jupyter_deploy\n"
        "print(json.dumps({'heavy': heavy(), 'ours': sorted(m for m in sys.modules "
        "if m.startswith('jupyter_deploy'))}))\n"
    )
    assert got["heavy"] == []
    # The package's own modules on a bare import: the version and the errors, nothing of the SDK.
    assert got["ours"] == ["jupyter_deploy", "jupyter_deploy._version", "jupyter_deploy.errors"]


def test_the_model_sdk_loads_no_protobuf_until_a_signature_crosses_the_wire() -> None:
    got = _run(
        "from jupyter_deploy import ModelClass\n"
        "import jupyter_deploy.model.signature as sg\n"
        "class Upper(ModelClass):\n"
        "    @ModelClass.method\n"
        "    def predict(self, text: str, n: int = 2) -> str:\n"
        "        return text.upper()\n"
        "before = heavy()\n"
        "lazy = type(sg.pb).__name__\n"
        "spec = sg.describe_method('predict', Upper.predict)\n"
        "msg = sg.method_to_proto(spec)\n"
        "print(json.dumps({'before': before, 'lazy': lazy, 'same': sg.method_from_proto(msg) == spec,\n"
        "    'bound': sg.pb is sys.modules['jupyter_deploy.proto.runner_pb2'],\n"
        "    'message': type(msg).__name__}))\n"
    )
    assert got["before"] == []
    assert got["lazy"] == "LazyModule"
    # After its first use the global is the generated module itself: later calls go through no proxy.
    assert got["bound"] is True
    assert got["message"] == "MethodDescription" and got["same"] is True


def test_every_public_name_resolves_lazily() -> None:
    got = _run(
        "import jupyter_deploy\n"
        "names = list(jupyter_deploy.__all__)\n"
        "missing = [n for n in names if n not in dir(jupyter_deploy)]\n"
        "ns = {}\n"
        "for n in names:\n"
        "    exec(f'from jupyter_deploy import {n}', ns)\n"
        "unresolved = [n for n in names if ns.get(n) is None]\n"
        "same = all(getattr(jupyter_deploy, n) is ns[n] for n in names)\n"
        "try:\n"
        "    jupyter_deploy.no_such_name\n"
        "    error = ''\n"
        "except AttributeError as e:\n"
        "    error = str(e)\n"
        "import jupyter_deploy.model as model\n"
        "model_unresolved = [n for n in model.__all__ if getattr(model, n, None) is None]\n"
        "print(json.dumps({'n': len(names), 'missing': missing, 'unresolved': unresolved, 'same': same,\n"
        "    'error': error, 'model_unresolved': model_unresolved,\n"
        "    'submodule': jupyter_deploy.model is sys.modules['jupyter_deploy.model'],\n"
        "    'client': jupyter_deploy.Client.__module__}))\n"
    )
    assert got["n"] > 30
    assert got["missing"] == [] and got["unresolved"] == [] and got["same"] is True
    assert got["model_unresolved"] == []
    assert "no attribute 'no_such_name'" in got["error"]
    assert got["submodule"] is True  # `jupyter_deploy.model` after a bare import, as before
    assert got["client"].startswith("jupyter_deploy.client")


def test_a_fresh_bare_import_still_reaches_the_sdk_through_the_submodule() -> None:
    got = _run(
        "import jupyter_deploy\n"
        "cls = jupyter_deploy.model.ModelClass\n"
        "print(json.dumps({'same': cls is jupyter_deploy.ModelClass, 'heavy': heavy()}))\n"
    )
    assert got == {"same": True, "heavy": []}


def test_load_ext_in_a_real_ipython_shell_loads_no_heavy_library() -> None:
    got = _run(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "before = set(heavy())\n"
        "ip.run_line_magic('load_ext', 'jupyter_deploy')\n"
        "new = sorted(set(heavy()) - before)\n"
        "work = 'jupyter_deploy.notebook.magics' in sys.modules\n"
        "from IPython.core.error import UsageError\n"
        "try:\n"
        "    ip.run_line_magic('predict', '--no-such-option')\n"
        "    usage = ''\n"
        "except UsageError as e:\n"
        "    usage = str(e)\n"
        "print(json.dumps({'new': new, 'usage': usage, 'work': work,\n"
        "    'work_after': 'jupyter_deploy.notebook.magics' in sys.modules, 'help': ip.find_line_magic('deploy').__doc__,\n"
        "    'cell': sorted(ip.magics_manager.magics['cell']), 'line': sorted(ip.magics_manager.magics['line'])}))\n"
    )
    assert got["new"] == []
    # The magics' work (jupyter_deploy.notebook.magics) is imported by the first magic run.
    assert got["work"] is False and got["work_after"] is True
    assert "deploy" in got["cell"]
    assert {"deploy", "predict", "stream"} <= set(got["line"])
    # The magics' parsers are built on first use (not at %load_ext): a bad line is still a
    # UsageError, and the help still lists the options.
    assert "required: model_id" in got["usage"]
    assert "--nodepool" in got["help"] and "--min-replicas" in got["help"]


def test_results_render_after_load_ext_though_the_renderers_load_on_first_display() -> None:
    got = _run(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'jupyter_deploy')\n"
        "loaded = lambda: sorted(m for m in ('jupyter_deploy.notebook.render', 'jupyter_deploy.model.types') "
        "if m in sys.modules)\n"
        "at_load = loaded()\n"
        "plain, _ = ip.display_formatter.format([1, 2])\n"
        "after_list = loaded()\n"
        "from jupyter_deploy import Concept\n"
        "one, _ = ip.display_formatter.format(Concept('c', '<c>', 0.5))\n"
        "many, _ = ip.display_formatter.format([Concept('c', 'c', 0.5)])\n"
        "ip.run_line_magic('unload_ext', 'jupyter_deploy')\n"
        "gone, _ = ip.display_formatter.format(Concept('c'))\n"
        "print(json.dumps({'at_load': at_load, 'after_list': after_list, 'plain': sorted(plain),\n"
        "    'one': one.get('text/html', ''), 'many': many.get('text/html', ''), 'gone': sorted(gone)}))\n"
    )
    assert got["at_load"] == [] and got["after_list"] == []  # any other list: shown as always
    assert got["plain"] == ["text/plain"]
    assert "&lt;c&gt;" in got["one"]
    assert "jd-concepts" in got["many"]
    assert got["gone"] == ["text/plain"]  # %unload_ext takes the formatters away
