"""Hot reload: which new versions may be swapped into a running replica, and how their code is built.

A version may replace the one a replica runs *in place* (new code, the loaded state kept) only
when nothing that built that state changed. The rule is explicit and conservative
(``hot_swappable``):

- every file of the folder but ``1/model.py`` is byte for byte the same (``config.yaml``,
  ``requirements.txt``, ``1/transformer.py``, other modules, checkpoints);
- in ``model.py``, only the *bodies* of functions may change (the code between a ``def`` line
  and the next definition, docstrings included): of the model class's methods and of
  module-level functions. Signatures, decorators, imports, constants, class attributes, other
  classes and any other module-level statement stay the same, and so does the list of
  functions (none added, removed or renamed);
- the state-building code does not change at all: ``load_model``, ``__init__`` (and the other
  construction hooks, ``STATE_BUILDERS``), a ``functools.cached_property`` (its value is kept
  in the instance), every function they use (``self.helper()``, a
  module-level ``build()``, followed transitively) and every function a module-level or
  class-level statement, a decorator or another class uses. What code reaches only through
  ``getattr`` with a computed name is not seen.

A swap builds the new code with ``rebuild_module``: a fresh module whose statements other
than definitions (imports, constants, objects made at import) keep the values they have in
the module being replaced (they are the same statements), and whose functions and model
class are defined anew from the new file. Re-running the module instead would run again
what the rule says did not change, such as a tokenizer loaded at import. Classes other than
the model class are the old ones (unchanged, so instances in the loaded state keep their
class). Module-level functions are all defined anew: a cache one keeps through a decorator
(``functools.lru_cache``) starts empty.

This module reads source with ``ast`` and imports nothing else: the control plane, which never
imports model code, uses ``hot_swappable`` to decide, and the runner checks again before it swaps.

Example::

    ok, why = hot_swappable("versions/v1", "versions/v2")
    # (True, 'predict() changed')  or  (False, 'load_model() changed: the loaded state would not match ...')
"""

from __future__ import annotations
import __future__

import ast
import copy
import filecmp
import os
import sys
import types
from pathlib import Path

#: Methods that build an instance's state: when one of them (or what it uses) changes, the state a
#: replica holds is not what the new code would build, so the new version needs new replicas.
STATE_BUILDERS = ("load_model", "__init__", "__new__", "__init_subclass__", "__set_name__",
                  "__post_init__", "__setstate__", "__getstate__", "__reduce__", "__reduce_ex__")
MODEL_FILE = os.path.join("1", "model.py")
#: Left out of the folder comparison: what importing the model's modules may write beside them.
_IGNORED = ("__pycache__",)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def hot_swappable(old_dir: str | os.PathLike, new_dir: str | os.PathLike) -> tuple[bool, str]:
    """Whether the model folder ``new_dir`` may replace ``old_dir`` in a running replica.

    Returns ``(True, what changed)`` or ``(False, why not)``, each one line for a person.

    Example::

        hot_swappable("v1", "v2")   # (False, 'requirements.txt changed')
    """
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    why = _other_files_differ(old_dir, new_dir)
    if why:
        return False, why
    try:
        old = (old_dir / MODEL_FILE).read_text(encoding="utf-8")
        new = (new_dir / MODEL_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return False, f"cannot read {MODEL_FILE}: {e}"
    return compare_sources(old, new)


def _other_files_differ(old_dir: Path, new_dir: Path) -> str:
    """Why the folders differ in any file but 1/model.py ("" when they do not)."""
    old, new = _files(old_dir), _files(new_dir)
    for rel in sorted(old.keys() ^ new.keys()):
        return f"{rel} was {'removed' if rel in old else 'added'}"
    for rel in sorted(old):
        if rel == MODEL_FILE:
            continue
        a, b = old[rel], new[rel]
        if a.is_symlink() or b.is_symlink():
            same = a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
        else:
            same = filecmp.cmp(a, b, shallow=False)
        if not same:
            return f"{rel} changed"
    return ""


def _files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED)
        for name in files:
            if not name.endswith(".pyc"):
                path = Path(folder, name)
                found[os.path.relpath(path, root)] = path
    return found


# ------------------------------------------------------------ model.py


def compare_sources(old: str, new: str) -> tuple[bool, str]:
    """Whether the model source ``new`` may replace ``old`` in place; ``(ok, what changed or why not)``.

    >>> compare_sources("class M(ModelClass):\\n def predict(self): return 1\\n",
    ...                 "class M(ModelClass):\\n def predict(self): return 2\\n")
    (True, 'predict() changed')
    """
    try:
        old_tree, new_tree = ast.parse(old), ast.parse(new)
    except SyntaxError as e:
        return False, f"model.py does not parse (line {e.lineno}: {e.msg})"
    old_cls, new_cls = _model_class(old_tree), _model_class(new_tree)
    if old_cls is None or new_cls is None:
        return False, "model.py must define exactly one ModelClass subclass"
    if old_cls.name != new_cls.name:
        return False, f"the model class was renamed ({old_cls.name} -> {new_cls.name})"
    changed: list[str] = []  # functions whose body changed, as "name()" or "Class.name()"
    why = _compare_block(old_tree.body, new_tree.body, None, old_cls.name, changed)
    if why:
        return False, why
    why = _state_code_changed(old_tree, new_tree, old_cls.name, changed)
    if why:
        return False, why
    if not changed:
        return True, "only comments or formatting changed"
    names = [f"{_short(c, old_cls.name)}()" for c in changed]
    return True, f"{', '.join(names[:5])}{' and more' if len(names) > 5 else ''} changed"


def _model_class(tree: ast.Module) -> ast.ClassDef | None:
    found = [node for node in tree.body if isinstance(node, ast.ClassDef) and any(
        (b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")) == "ModelClass" for b in node.bases)]
    return found[0] if len(found) == 1 else None


def _compare_block(old: list[ast.stmt], new: list[ast.stmt], owner: str | None, model_cls: str,
                   changed: list[str]) -> str:
    """Compare the statements of a module (``owner`` None) or of the model class; "" when they
    differ only in function bodies (listed in ``changed``), else why not."""
    where = "module-level code" if owner is None else f"the class body of {owner}"
    old_defs = [_def_name(s) for s in old if _def_name(s)]
    new_defs = [_def_name(s) for s in new if _def_name(s)]
    if old_defs != new_defs:
        return _defs_changed(old_defs, new_defs, owner)
    if len(old) != len(new):
        return _added_or_removed(old, new, where)
    for a, b in zip(old, new):
        if isinstance(a, _FUNCTIONS) and isinstance(b, _FUNCTIONS):
            qualified = f"{owner}.{a.name}" if owner else a.name
            if type(a) is not type(b) or _dump(_header(a)) != _dump(_header(b)):
                return f"the signature or decorators of {a.name}() changed (line {b.lineno})"
            if _dump(_body(a)) != _dump(_body(b)) or ast.get_docstring(a) != ast.get_docstring(b):
                changed.append(qualified)
        elif owner is None and isinstance(a, ast.ClassDef) and isinstance(b, ast.ClassDef) and a.name == model_cls:
            if _dump(_header(a)) != _dump(_header(b)):
                return f"the bases, keywords or decorators of {a.name} changed (line {b.lineno})"
            why = _compare_block(a.body, b.body, a.name, model_cls, changed)
            if why:
                return why
        elif _dump(a) != _dump(b):
            return _statement_changed(a, b, where)
    return ""


def _def_name(node: ast.stmt) -> str:
    return node.name if isinstance(node, (*_FUNCTIONS, ast.ClassDef)) else ""


def _defs_changed(old: list[str], new: list[str], owner: str | None) -> str:
    kind = "method" if owner else "function or class"
    added = [n for n in new if n not in old]
    removed = [n for n in old if n not in new]
    if added:
        return f"{kind} {added[0]} was added{f' to {owner}' if owner else ''}"
    if removed:
        return f"{kind} {removed[0]} was removed{f' from {owner}' if owner else ''}"
    return f"the order of the {kind}s{f' of {owner}' if owner else ''} changed"


def _statement_changed(a: ast.stmt, b: ast.stmt, where: str) -> str:
    if isinstance(a, (ast.Import, ast.ImportFrom)) or isinstance(b, (ast.Import, ast.ImportFrom)):
        return f"imports changed (line {b.lineno})"
    if isinstance(b, ast.ClassDef):
        return f"class {b.name} changed (only the model class's method bodies may change)"
    if where.startswith("the class body"):
        return f"a class attribute or statement of {where[len('the class body of '):]} changed (line {b.lineno})"
    return f"{where} changed (line {b.lineno}: only function bodies may change)"


def _added_or_removed(old: list[ast.stmt], new: list[ast.stmt], where: str) -> str:
    """Why two blocks with the same definitions but not as many statements differ."""
    for a, b in zip(old, new):
        if not (isinstance(a, _FUNCTIONS) and isinstance(b, _FUNCTIONS)) and _dump(a) != _dump(b):
            moved = b if len(new) > len(old) else a
            if isinstance(moved, (ast.Import, ast.ImportFrom)):
                return f"imports changed (line {b.lineno})"
            return f"{where} changed (a statement was added or removed near line {b.lineno})"
    last = (new if len(new) > len(old) else old)[min(len(old), len(new))]
    if isinstance(last, (ast.Import, ast.ImportFrom)):
        return f"imports changed (line {last.lineno})"
    return f"{where} changed (a statement was added or removed near line {last.lineno})"


def _header(node: ast.AST) -> ast.AST:
    """A definition without its body (name, arguments, annotations, decorators, bases)."""
    head = copy.copy(node)
    head.body = []
    return head


def _body(node: ast.AST) -> list[ast.stmt]:
    """A function's body without its docstring."""
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return body


def _dump(node: ast.AST | list) -> str:
    if isinstance(node, list):
        return "\n".join(ast.dump(n) for n in node)
    return ast.dump(node)


# ------------------------------------------------------------ what builds the state


def _state_code_changed(old: ast.Module, new: ast.Module, model_cls: str, changed: list[str]) -> str:
    """Why a changed function is state-building code ("" when none is)."""
    if not changed:
        return ""
    uses: dict[str, set[str]] = {}
    roots: dict[str, str] = {}  # a root's name -> how to say it in the reason
    for tree in (old, new):
        functions, cls = _functions(tree, model_cls)
        for name, node in functions.items():
            uses.setdefault(name, set()).update(_used(node, functions, model_cls, _self_name(node, name)))
        for name, node in functions.items():
            if name.startswith(model_cls + ".") and (name.split(".", 1)[1] in STATE_BUILDERS or _caches(node)):
                roots[name] = f"{name.split('.', 1)[1]}()"
        # Everything that is no function body runs once and keeps what it made: at import (module
        # statements, class attributes, decorators, defaults, other classes) or per instance.
        others = [s for s in tree.body if not isinstance(s, _FUNCTIONS) and s is not cls]
        others += [s for s in cls.body if not isinstance(s, _FUNCTIONS)] if cls is not None else []
        heads = [_header(s) for s in tree.body if isinstance(s, _FUNCTIONS)]
        heads += [_header(s) for s in cls.body if isinstance(s, _FUNCTIONS)] if cls is not None else []
        if cls is not None:
            heads.append(_header(cls))
        for statement in others + heads:
            for name in _used(statement, functions, model_cls, None):
                roots.setdefault(name, _root_text(statement))
    changed_set = set(changed)
    for root, said in roots.items():
        seen, todo = set(), [root]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in changed_set:
                if name == root and said == f"{_short(root, model_cls)}()":
                    return f"{said} changed: the loaded state would not match the new code"
                return (f"{_short(name, model_cls)}() changed, and {said} uses it: the loaded state would "
                        "not match the new code")
            todo.extend(uses.get(name, ()))
    return ""


def _caches(node: ast.AST) -> bool:
    """Whether a method keeps what it computes in the instance (``functools.cached_property``): its
    value is then part of the loaded state, built by the old code."""
    return any((d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", "")) == "cached_property"
               for d in node.decorator_list)


def _short(name: str, model_cls: str) -> str:
    return name.split(".", 1)[1] if name.startswith(model_cls + ".") else name


def _root_text(statement: ast.AST) -> str:
    if isinstance(statement, ast.ClassDef):
        return f"class {statement.name}" if statement.body else f"the decorators or bases of {statement.name}"
    if isinstance(statement, _FUNCTIONS):
        return f"the decorators or defaults of {statement.name}()"
    return f"the statement at line {getattr(statement, 'lineno', '?')}"


def _functions(tree: ast.Module, model_cls: str) -> tuple[dict[str, ast.AST], ast.ClassDef | None]:
    """Module-level functions by name, and the model class's methods as ``Class.name``."""
    found: dict[str, ast.AST] = {}
    cls = None
    for node in tree.body:
        if isinstance(node, _FUNCTIONS):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef) and node.name == model_cls:
            cls = node
            for item in node.body:
                if isinstance(item, _FUNCTIONS):
                    found[f"{model_cls}.{item.name}"] = item
    return found, cls


def _self_name(node: ast.AST, name: str) -> str | None:
    """The name a method calls its instance (or class) by: its first parameter."""
    if "." not in name or not isinstance(node, _FUNCTIONS):
        return None
    params = node.args.posonlyargs + node.args.args
    return params[0].arg if params else None


def _used(node: ast.AST, functions: dict[str, ast.AST], model_cls: str, self_name: str | None) -> set[str]:
    """The functions of ``functions`` that ``node`` names: ``f`` (a module-level function),
    ``self.m``, ``cls.m``, ``Model.m``, ``super().m`` and ``getattr(self, "m")`` (a method of the model
    class)."""
    found: set[str] = set()
    owners = {model_cls} | ({self_name} if self_name else set())
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in functions:
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            base = sub.value
            named = isinstance(base, ast.Name) and base.id in owners
            via_super = isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super"
            if (named or via_super) and f"{model_cls}.{sub.attr}" in functions:
                found.add(f"{model_cls}.{sub.attr}")
        elif isinstance(sub, ast.Call) and getattr(sub.func, "id", "") in ("getattr", "hasattr") and \
                len(sub.args) >= 2 and isinstance(sub.args[1], ast.Constant) and \
                f"{model_cls}.{sub.args[1].value}" in functions:
            found.add(f"{model_cls}.{sub.args[1].value}")  # getattr(self, "name"): the name written out
    return found


# ------------------------------------------------------------ building the new code


def rebuild_module(old: types.ModuleType, source: str, file: str | os.PathLike, name: str) -> types.ModuleType:
    """The module of ``source`` (a ``model.py`` that ``compare_sources`` let replace ``old``'s), built
    from ``old``: its functions and model class are defined anew from ``source``, every other
    statement keeps the value it has in ``old``. Registered in ``sys.modules`` as ``name``.

    Raises what defining the new functions raises (a decorator, say), with ``name`` unregistered.
    """
    tree = ast.parse(source, str(file))
    model_cls = _model_class(tree)
    if model_cls is None:
        raise ValueError(f"{file}: must define exactly one ModelClass subclass")
    module = types.ModuleType(name)
    namespace = module.__dict__
    namespace.update({k: v for k, v in vars(old).items() if k not in ("__name__", "__spec__", "__loader__",
                                                                       "__file__", "__cached__")})
    namespace["__file__"] = str(file)
    defined = [node for node in tree.body if isinstance(node, _FUNCTIONS) or node is model_cls]
    flags = 0
    for node in tree.body:  # `from __future__ import annotations` must hold for the new code too
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)
    code = compile(ast.Module(body=defined, type_ignores=[]), str(file), "exec", flags=flags, dont_inherit=True)
    sys.modules[name] = module
    try:
        exec(code, namespace)
    except BaseException:
        del sys.modules[name]
        raise
    return module
