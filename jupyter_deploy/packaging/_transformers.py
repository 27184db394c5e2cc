"""``transformers`` pipelines, saved with ``save_pretrained`` and loaded back with
``transformers.pipeline`` for the same task (on the replica's GPU when it has one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError
from ._common import Inputs, Method, Plan

#: Tasks whose pipeline takes an image; audio tasks take a file's bytes; the others text.
_IMAGE_TASKS = ("image-", "object-detection", "depth-estimation", "zero-shot-image-classification",
                "mask-generation", "visual-question-answering", "document-question-answering")
_AUDIO_TASKS = ("automatic-speech-recognition", "audio-classification", "zero-shot-audio-classification")


def matches(obj: Any) -> bool:
    if not any(c.__module__.split(".")[0] == "transformers" for c in type(obj).__mro__):
        return False
    if not any(c.__name__ == "Pipeline" for c in type(obj).__mro__):
        raise ModelDefinitionError(f"package() serves a transformers pipeline (transformers.pipeline(...)), "
                                   f"not a {type(obj).__qualname__}; wrap the model in a pipeline")
    return True


def _kind(task: str) -> str:
    if task.startswith(_IMAGE_TASKS):
        return "image"
    return "bytes" if task in _AUDIO_TASKS else "text"


def inputs(obj: Any, sample: Any) -> Inputs:
    kind = _kind(obj.task)
    if sample is not None and not isinstance(sample, Inputs(kind).python_type):
        raise ValueError(f"sample: a {obj.task} pipeline takes {Inputs(kind).annotation}, got "
                         f"{type(sample).__name__}")
    return Inputs(kind, sample=sample)


def plan(obj: Any, given: Inputs, checkpoint: Path) -> Plan:
    obj.save_pretrained(str(checkpoint / "pipeline"))
    load = ["import torch", "",
            "device = 0 if torch.cuda.is_available() else -1  # the replica's GPU, if any",
            f'self.pipe = transformers.pipeline({obj.task!r}, model=str(checkpoint / "pipeline"), device=device)']
    from .runtime import jsonable

    outputs = {"predict": jsonable(obj(given.sample))} if given.sample is not None else {}
    method = Method("Any", [f"return jsonable(self.pipe({given.param}))"],
                    f"The {obj.task} pipeline's result (JSON-like).")
    return Plan("transformers", f"{obj.task} pipeline", ["import transformers"], load, {"predict": method},
                ["transformers", "torch"], [], ["1/checkpoint/pipeline: saved with save_pretrained"], outputs,
                extra_runtime=["jsonable"])
