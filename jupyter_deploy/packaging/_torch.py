"""PyTorch ``nn.Module``s: as TorchScript where the module scripts (or traces, given a sample),
else as a ``state_dict`` beside the module's class (imported where it is importable, its source
copied where it was defined in the notebook). Served on the replica's GPU when it has one."""

from __future__ import annotations

import importlib
import inspect
import textwrap
from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError
from ._common import Inputs, Method, Plan, inputs_for


def matches(obj: Any) -> bool:
    if not any(c.__module__.split(".")[0] == "torch" for c in type(obj).__mro__):
        return False
    import torch

    if not isinstance(obj, torch.nn.Module):
        raise ModelDefinitionError(f"package() serves a torch.nn.Module, not a {type(obj).__qualname__}")
    return True


def inputs(obj: Any, sample: Any) -> Inputs:
    return inputs_for(sample)


def plan(obj: Any, given: Inputs, checkpoint: Path) -> Plan:
    import torch

    training = obj.training
    obj.eval()  # packaged for inference; the notebook's module is put back as it was
    try:
        example = torch.as_tensor(given.sample) if given.sample is not None else None
        imports, constants, load, note = _save(obj, example, checkpoint)
        outputs = {}
        if example is not None:
            with torch.no_grad():
                out = obj(example)
            if not isinstance(out, torch.Tensor):
                raise ModelDefinitionError(f"{type(obj).__name__}'s forward returns {type(out).__name__}; "
                                           "package() serves modules that return one tensor")
            outputs["predict"] = out.detach().cpu().numpy()
    finally:
        obj.train(training)
    body = [f"x = torch.as_tensor({given.checked()}, device=self.device)",
            "with torch.no_grad():",
            "    return self.model(x).cpu().numpy()"]
    load = ['self.device = "cuda" if torch.cuda.is_available() else "cpu"  # the replica\'s GPU, if any',
            *load, "self.model.to(self.device).eval()"]
    return Plan("PyTorch", type(obj).__name__, imports, load,
                {"predict": Method("np.ndarray", body, "The module's output for a batch of inputs.")},
                ["torch"], constants, [note], outputs)


def _save(obj: Any, example: Any, checkpoint: Path) -> tuple[list[str], list[str], list[str], str]:
    """Write the module; (imports, constants, load_model lines, config note)."""
    import torch

    scripted, why = None, ""
    try:
        scripted = torch.jit.script(obj)
        how = "scripted"
    except Exception as e:  # noqa: BLE001 - not scriptable: trace it, or keep its state_dict
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if example is not None:
            try:
                scripted = torch.jit.trace(obj, example)
                how = "traced on the sample"
            except Exception as e2:  # noqa: BLE001
                why += f"; tracing failed too: {type(e2).__name__}"
    if scripted is not None:
        scripted.save(str(checkpoint / "model.pt"))
        return (["import torch"], [], ['self.model = torch.jit.load(checkpoint / "model.pt", map_location="cpu")'],
                f"1/checkpoint/model.pt: TorchScript ({how}); it loads without the module's Python class")
    cls = type(obj)
    torch.save(obj.state_dict(), checkpoint / "state_dict.pt")
    load = [f"self.model = {cls.__name__}()",
            'self.model.load_state_dict(torch.load(checkpoint / "state_dict.pt", map_location="cpu", '
            "weights_only=True))"]
    note = (f"1/checkpoint/state_dict.pt: the weights of {cls.__name__}, which TorchScript could not "
            f"compile ({why}); {cls.__name__}() must build the module without arguments")
    if cls.__module__ != "__main__" and _importable(cls):
        return ["import torch", f"from {cls.__module__} import {cls.__name__}"], [], load, note
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        raise ModelDefinitionError(
            f"{cls.__name__} cannot be compiled by TorchScript ({why}) and its source cannot be read; "
            "define it in a module the replica can import, or give a sample to trace it with") from None
    constants = ["", "# The module's class, as defined in the notebook.", *source.rstrip().splitlines()]
    return ["import torch", "from torch import nn"], constants, load, note


def _importable(cls: type) -> bool:
    try:
        return getattr(importlib.import_module(cls.__module__), cls.__name__, None) is cls
    except ImportError:
        return False
