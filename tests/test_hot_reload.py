"""Hot reload (issue 17): a new version whose only change is method bodies is swapped into the
running replicas, which keep their loaded state; anything else rolls out new replicas.

The rule (``jupyter_deploy.model._hot``) is tested on sources and folders; the rest against a
real daemon and real runners: the same process (pid) answers with the new code and the state
``load_model`` built, ``hot=True`` refuses what it cannot swap, a failing ``test()`` rolls the
swap back, and callers during a swap see no failed call.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import write_model
from daemon_helpers import isolated_home

from jupyter_deploy import Client, ControlPlaneError, DeploymentError, Model
from jupyter_deploy.model._hot import compare_sources, hot_swappable

pytestmark = pytest.mark.timeout(300)

# ------------------------------------------------------------ the rule, on sources

BASE = '''
import random

from jupyter_deploy import ModelClass

SCALE = 2


def helper(x):
    return x + 1


def build():
    return [random.random()]


class Model(ModelClass):
    """A model."""

    factor = 3

    def __init__(self):
        self.calls = 0

    def load_model(self):
        self.weights = build()
        self._prepare()

    def _prepare(self):
        self.ready = True

    def _format(self, value):
        return f"{value}"

    @ModelClass.method
    def predict(self, x: int) -> str:
        return self._format(helper(x) * SCALE)

    def test(self):
        assert self.predict(1) == "4"
'''


def changed(old: str, new: str, count: int = 1) -> str:
    assert BASE.count(old) >= 1, old
    return BASE.replace(old, new, count)


SWAPPABLE = {
    "predict's body": (changed("helper(x) * SCALE", "helper(x) * SCALE * 10"), "predict() changed"),
    "a docstring added to predict": (changed("def predict(self, x: int) -> str:\n",
                                             "def predict(self, x: int) -> str:\n        \"\"\"Doc.\"\"\"\n"),
                                     "predict() changed"),
    "a helper method's body": (changed('return f"{value}"', 'return f"<{value}>"'), "_format() changed"),
    "a module-level function's body": (changed("return x + 1", "return x + 2"), "helper() changed"),
    "test()'s body": (changed('== "4"', '!= "5"'), "test() changed"),
    "comments only": (changed("class Model(ModelClass):", "# a comment\nclass Model(ModelClass):  # here"),
                      "only comments or formatting changed"),
}

NOT_SWAPPABLE = {
    "load_model's body": (changed("self._prepare()", "self._prepare()\n        self.more = 1"),
                          "load_model() changed"),
    "__init__'s body": (changed("self.calls = 0", "self.calls = 1"), "__init__() changed"),
    "a method load_model uses": (changed("self.ready = True", "self.ready = 1"),
                                 "_prepare() changed, and load_model() uses it"),
    "a function load_model uses": (changed("return [random.random()]", "return [0.5]"),
                                   "build() changed, and load_model() uses it"),
    "a new import": (changed("import random\n", "import random\nimport os\n"), "imports changed"),
    "a changed import": (changed("import random\n", "import random as rnd\nrandom = rnd\n"), "imports changed"),
    "a class attribute": (changed("factor = 3", "factor = 4"), "a class attribute or statement of Model changed"),
    "a module constant": (changed("SCALE = 2", "SCALE = 3"), "module-level code changed"),
    "predict's signature": (changed("def predict(self, x: int)", "def predict(self, x: float)"),
                            "the signature or decorators of predict() changed"),
    "predict's decorator": (changed("@ModelClass.method\n", "@ModelClass.method(batch=False)\n"),
                            "the signature or decorators of predict() changed"),
    "a method added": (changed("    def test(self):", "    def extra(self):\n        return 1\n\n    def test(self):"),
                       "method extra was added to Model"),
    "a function removed": (changed("def helper(x):\n    return x + 1\n", "").replace("helper(x)", "(x + 1)"),
                           "function or class helper was removed"),
    "the class renamed": (BASE.replace("class Model(", "class Other("), "the model class was renamed"),
    "a syntax error": (changed("return x + 1", "return x +"), "model.py does not parse"),
}


@pytest.mark.parametrize("case", SWAPPABLE)
def test_swappable_changes(case):
    new, said = SWAPPABLE[case]
    assert compare_sources(BASE, new) == (True, said)


@pytest.mark.parametrize("case", NOT_SWAPPABLE)
def test_changes_that_need_new_replicas(case):
    new, said = NOT_SWAPPABLE[case]
    ok, why = compare_sources(BASE, new)
    assert not ok and said in why, why


def test_unchanged_source_is_swappable():
    assert compare_sources(BASE, BASE) == (True, "only comments or formatting changed")


def test_code_reached_from_import_time_or_other_classes_counts_as_state():
    module_level = BASE.replace("SCALE = 2", "def table():\n    return 2\n\n\nSCALE = table()")
    ok, why = compare_sources(module_level, module_level.replace("return 2", "return 3"))
    assert not ok and why.startswith("table() changed, and the statement at line 10 uses it"), why
    helper_class = BASE + "\n\nclass Net:\n    def forward(self, x):\n        return helper(x)\n"
    ok, why = compare_sources(helper_class, helper_class.replace("return x + 1", "return x + 5"))
    assert not ok and "helper() changed, and class Net uses it" in why, why
    via_getattr = BASE.replace("self._prepare()", 'getattr(self, "_format")(1)')
    ok, why = compare_sources(via_getattr, via_getattr.replace('return f"{value}"', "return value"))
    assert not ok and "_format() changed, and load_model() uses it" in why, why


def test_a_cached_property_is_state():
    cached = BASE.replace("import random\n", "import functools\nimport random\n").replace(
        "    def _format(self, value):",
        "    @functools.cached_property\n    def table(self):\n        return 2\n\n    def _format(self, value):")
    ok, why = compare_sources(cached, cached.replace("return 2", "return 3"))
    assert not ok and why.startswith("table() changed: the loaded state would not match"), why
    assert compare_sources(cached, cached.replace("helper(x) * SCALE", "helper(x)")) == (True, "predict() changed")


def folder(root: Path, source: str, requirements: str = "", config_extra: str = "") -> Path:
    path = write_model(root, source, model_id="hot")
    (path / "requirements.txt").write_text(requirements)
    if config_extra:
        (path / "config.yaml").write_text((path / "config.yaml").read_text() + config_extra)
    return path


def test_folders_other_files_must_be_identical(tmp_path):
    old = folder(tmp_path / "old", BASE)
    body = SWAPPABLE["predict's body"][0]
    assert hot_swappable(old, folder(tmp_path / "body", body)) == (True, "predict() changed")
    assert hot_swappable(old, folder(tmp_path / "reqs", body, requirements="numpy\n")) == \
        (False, "requirements.txt changed")
    assert hot_swappable(old, folder(tmp_path / "config", body, config_extra="description: x\n")) == \
        (False, "config.yaml changed")
    extra = folder(tmp_path / "extra", body)
    (extra / "1" / "utils.py").write_text("X = 1\n")
    assert hot_swappable(old, extra) == (False, "1/utils.py was added")
    cached = folder(tmp_path / "cached", body)
    (cached / "1" / "__pycache__").mkdir()
    (cached / "1" / "__pycache__" / "model.cpython-312.pyc").write_bytes(b"\0")
    assert hot_swappable(old, cached) == (True, "predict() changed")  # what imports write is no change


# ------------------------------------------------------------ end to end

SLOW = '''
import os
import secrets
import time

from jupyter_deploy import ModelClass


class Slow(ModelClass):
    def load_model(self):
        time.sleep(2)  # a model that is slow to load: a hot reload must not load it again
        self.weights = secrets.token_hex(8)

    @ModelClass.method
    def predict(self, text: str) -> str:
        return "{tag}|" + self.weights + "|" + str(os.getpid())

    def test(self):
        assert {test}
'''


def slow(tag: str, test: str = "True", load: str = "") -> str:
    source = SLOW.replace("{tag}", tag).replace("{test}", test)
    return source.replace("time.sleep(2)", f"time.sleep(2){load}")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "hot_home") as home:
        yield home


@pytest.fixture(scope="module")
def client(home):
    client = Client()
    yield client
    client.close()


def answer(model: Model) -> tuple[str, str, str]:
    tag, weights, pid = model.predict("x").split("|")
    return tag, weights, pid


def replica_pids(dep) -> list[int]:
    return sorted(r["pid"] for r in dep.status["replicas"])


def test_a_changed_method_body_is_swapped_in_keeping_the_loaded_state(client, tmp_path):
    root = folder(tmp_path / "m", slow("one"))
    dep = client.deploy(root, "hot-a")
    assert dep.rollout.action == "create"
    model = Model(model_id="hot-a", client=client)
    tag, weights, pid = answer(model)
    assert tag == "one"
    pids = replica_pids(dep)

    folder(root, slow("two"))
    again = client.deploy(root, "hot-a")
    assert again.rollout.action == "hot reload", again.rollout.summary()
    assert again.rollout.hot_note == "predict() changed"
    assert "hot reload: predict() changed (loaded state kept)" in again.rollout.summary()
    assert again.rollout.version.number == 2
    assert answer(model) == ("two", weights, pid)  # new code, the same process and the same weights
    status = again.status
    assert replica_pids(again) == pids and status["version_number"] == 2
    assert all(r["version_id"] == status["version_id"] and r["spec"] == status["spec"]
               for r in status["replicas"])
    # The description the registry shows is the one the swapped replica serves.
    assert [m.name for m in model.version.proto.description.methods] == ["predict"]

    # A changed load_model() needs new replicas: an ordinary rollout, which says why.
    folder(root, slow("three", load="\n        self.extra = 1"))
    third = client.deploy(root, "hot-a")
    assert third.rollout.action == "roll out"
    assert third.rollout.hot_note.startswith("load_model() changed"), third.rollout.hot_note
    assert "new replicas (no hot reload: load_model() changed" in third.rollout.summary()
    tag, new_weights, new_pid = answer(model)
    assert tag == "three" and new_pid != pid and new_weights != weights


def test_hot_true_refuses_what_it_cannot_swap_and_changes_nothing(client, tmp_path):
    root = folder(tmp_path / "m", slow("one"))
    with pytest.raises(DeploymentError, match="does not exist yet"):
        client.deploy(root, "hot-b", hot=True)  # nothing runs yet, so nothing to swap into
    client.deploy(root, "hot-b")
    model = Model(model_id="hot-b", client=client)
    before = answer(model)

    folder(root, slow("two", load="\n        self.extra = 1"))
    with pytest.raises(DeploymentError, match=r"cannot hot reload deployment hotb: load_model\(\) changed") as e:
        client.deploy(root, "hot-b", hot=True)
    assert e.value.state == "RUNNING"
    dep = client.deployment("hotb")
    assert dep.status["version_number"] == 1 and dep.state == "RUNNING"
    assert answer(model) == before

    folder(root, slow("three", test='self.predict("x").startswith("three|")'))  # swappable: it swaps
    third = client.deploy(root, "hot-b", hot=True)
    assert third.rollout.action == "hot reload" and answer(model) == ("three", *before[1:])

    folder(root, slow("four"))  # swappable, but hot=False: new replicas (load_model runs again)
    fourth = client.deploy(root, "hot-b", hot=False)
    assert fourth.rollout.action == "roll out" and fourth.rollout.hot_note == "hot reload turned off for this update"
    tag, weights, pid = answer(model)
    assert tag == "four" and pid != before[2] and weights != before[1]

    with pytest.raises(ControlPlaneError, match="changes settings replicas start with") as e:
        dep.update(hot=True, transformer={"enabled": False})
    assert e.value.code == "FAILED_PRECONDITION" and dep.status["version_number"] == 4


def answers(model: Model, calls: int = 12) -> set[tuple[str, str]]:
    """(tag, pid) of the answers of ``calls`` calls (they take turns over the replicas)."""
    return {(tag, pid) for tag, _, pid in (answer(model) for _ in range(calls))}


def test_a_failing_test_rolls_the_swap_back(client, tmp_path):
    """Two replicas: the first one tests the swapped code; when that fails neither swaps."""
    root = folder(tmp_path / "m", slow("one"))
    dep = client.deploy(root, "hot-c", autoscale_config={"min_replicas": 2})
    model = Model(model_id="hot-c", client=client)
    before = answer(model)
    pids = replica_pids(dep)
    assert len(pids) == 2 and answers(model) == {("one", str(pid)) for pid in pids}

    folder(root, slow("two", test='self.predict("x") == "never", "the new code is wrong"'))
    with pytest.raises(DeploymentError, match="rolled back") as e:
        client.deploy(root, "hot-c")
    assert "hot reload failed on replica" in e.value.reason
    assert "AssertionError: the new code is wrong" in e.value.reason
    assert "test" in e.value.reason  # the model's own frame: its test()
    assert answers(model) == {("one", str(pid)) for pid in pids}  # the old code, the same processes
    status = client.deployment("hotc").status
    assert status["version_number"] == 1 and status["rollout_failed"]
    assert status["hot_reload"]["hot"] is False and "hot reload failed" in status["hot_reload"]["why"]

    folder(root, slow("three"))  # fixed: swaps in
    fixed = client.deploy(root, "hot-c")
    assert fixed.rollout.action == "hot reload" and not fixed.status["rollout_failed"]
    assert answers(model) == {("three", str(pid)) for pid in pids} and replica_pids(fixed) == pids
    assert before[1] in {answer(model)[1] for _ in range(6)}  # each replica keeps its own weights


def test_callers_during_a_swap_see_no_failed_call(client, tmp_path):
    root = folder(tmp_path / "m", slow("old"))
    client.deploy(root, "hot-d")
    model = Model(model_id="hot-d", client=client)
    answer(model)
    seen: list[set[str]] = [set() for _ in range(8)]
    failures: list[BaseException] = []
    swapped = threading.Event()
    stop = threading.Event()

    def caller(i: int) -> None:
        deadline = time.monotonic() + 60  # bounded by count and time
        for n in range(5000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                seen[i].add(model.predict(f"{i}-{n}").split("|")[0])
            except Exception as e:  # noqa: BLE001 - counted: the test fails on any
                failures.append(e)
            if swapped.is_set() and "new" in seen[i] and n % 20 == 0:
                return

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    folder(root, slow("new"))
    dep = client.deploy(root, "hot-d")
    swapped.set()
    for t in threads:
        t.join(90)
    stop.set()
    assert dep.rollout.action == "hot reload"
    assert failures == []
    assert all("old" in s and "new" in s for s in seen), seen


def test_a_sandboxed_replica_swaps_to_its_owners_copy_of_the_new_version(home, client, tmp_path):
    """Where the daemon is root, a user's runners run as an OS user of their own and read their
    owner's copy of each version (``control._sandbox``): the new version reaches them the same way."""
    from jupyter_deploy.control._home import sandboxed

    _, pat = client.create_user("carol")
    carol = Client(pat=pat)
    where = slow("one").replace('+ str(os.getpid())', '+ str(os.getpid()) + "|" + __file__ + "|" + '
                                'str(self.model_path) + "|" + str(os.getuid())')
    root = folder(tmp_path / "m", where)
    try:
        carol.deploy(root, "hot-e")
        model = carol.model("hot-e")
        tag, weights, pid, file, path, uid = model.predict("x").split("|")
        folder(root, where.replace('"one|"', '"two|"'))
        again = carol.deploy(root, "hot-e")
        assert again.rollout.action == "hot reload"
        version = again.status["version_id"]
        tag2, weights2, pid2, file2, path2, uid2 = model.predict("x").split("|")
        assert (tag2, weights2, pid2, uid2) == ("two", weights, pid, uid)
        assert Path(file2) == Path(path2) / "1" / "model.py" and Path(path2).name == version
        if sandboxed():
            assert int(uid) != 0 and Path(path2) == home / "sandboxes" / uid / "versions" / version
    finally:
        carol.close()


# ------------------------------------------------------------ through %%deploy


def test_the_magic_says_hot_reload_and_why_not(home, tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell(config=config)
    shell.displayhook.flush = lambda: None
    shell.run_cell("%load_ext jupyter_deploy").raise_error()
    try:
        shell.run_cell(f"%%deploy hot-magic -o dep\n{slow('one')}").raise_error()
        shell.run_cell("first = %predict hot-magic x").raise_error()
        capsys.readouterr()
        shell.run_cell(f"%%deploy hot-magic -o dep\n{slow('two')}").raise_error()
        out = capsys.readouterr().out
        assert "hot reload: predict() changed (loaded state kept)" in out, out
        shell.run_cell("second = %predict hot-magic x").raise_error()
        first, second = shell.user_ns["first"].split("|"), shell.user_ns["second"].split("|")
        assert second == ["two", *first[1:]]  # new code, same weights, same process

        shell.run_cell(f"%%deploy hot-magic --reload never\n{slow('three')}").raise_error()
        out = capsys.readouterr().out
        assert "new replicas (no hot reload: hot reload turned off for this update)" in out, out
        shell.run_cell("third = %predict hot-magic x").raise_error()
        assert shell.user_ns["third"].split("|")[0] == "three"
        assert shell.user_ns["third"].split("|")[2] != first[2]
        result = shell.run_cell(f"%%deploy hot-magic --reload sometimes\n{slow('four')}")
        assert result.error_in_exec is not None and "--reload" in str(result.error_in_exec)
    finally:
        magics = shell.magics_manager.registry.get("DeployMagics")
        if magics is not None:
            magics.close()
