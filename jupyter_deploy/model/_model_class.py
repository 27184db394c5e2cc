"""The model contract: ``ModelClass`` and its ``@ModelClass.method`` decorator."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, TypeVar, overload

from ..errors import ModelDefinitionError
from .signature import ROUTING_KEYWORDS, MethodSpec, describe_method

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__jupyter_deploy_method__"
#: Set on a method declared ``@ModelClass.method(batch=True)``.
BATCH_MARK = "__jupyter_deploy_batch__"
#: Set on a method declared ``@ModelClass.method(openai="chat"|"completion")``.
OPENAI_MARK = "__jupyter_deploy_openai__"


class Deferred:
    """A value computed when first read, for an attribute declared with ``_ReadOnFirstUse``."""

    def __init__(self, compute: Callable[[], Any]):
        self.compute = compute


class _ReadOnFirstUse:
    """An instance attribute that may be set to a :class:`Deferred`, computed on first read.

    ``ModelClass.config`` is one: the host sets it deferred, so a replica whose model
    never reads its config never loads the config validator (pydantic) on its way up.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None
        value = obj.__dict__.get(self.key)
        if isinstance(value, Deferred):
            value = obj.__dict__[self.key] = value.compute()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.key] = value


class ModelClass:
    """Base class of every served model; subclass it in ``1/model.py``.

    The contract, in the order a runner uses it:

    ``load_model(self)``
        Called once, before the first call is served, in the serving process.
        Load weights here (not in ``__init__``). When it raises, the replica
        is not served and the error is reported. Optional.
    ``@ModelClass.method``
        Marks each method callers may use. Any name works. Parameters and the
        return value must be annotated; the annotations decide the call shape
        (a plain return is unary, ``Iterator[T]`` is server streaming, an
        ``Iterator[T]`` parameter plus an ``Iterator[U]`` return is
        bidirectional) and how values cross the wire. ``async def`` methods
        and async generators work too. ``@ModelClass.method(batch=True)``
        declares a unary method that takes a list per parameter and returns a
        list, one result per input, in order: the runner calls it with
        batches it assembles from concurrent calls (see ``method``).
    ``test(self)``
        Optional self-check run after ``load_model`` by ``run-locally`` and by
        the first replica of a deployment; raise (or fail an assert) to fail.

    Before ``load_model`` runs, the runner sets ``self.model_path`` (the model
    folder), ``self.config`` (its parsed config.yaml, or None; read when first
    used) and ``self.checkpoint_path`` (the resolved ``checkpoints`` folder, or None).

    Example::

        from typing import Iterator
        from jupyter_deploy import ModelClass

        class Echo(ModelClass):
            def load_model(self):
                self.prefix = "echo: "

            @ModelClass.method
            def predict(self, text: str) -> str:
                return self.prefix + text

            @ModelClass.method
            def generate(self, text: str, n: int = 3) -> Iterator[str]:
                for i in range(n):
                    yield f"{i}: {text}"

            def test(self):
                assert self.predict("hi") == "echo: hi"
    """

    model_path: Any = None
    config: Any = _ReadOnFirstUse()
    checkpoint_path: Any = None
    _method_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = dict.fromkeys(cls._method_names)  # inherited ones first, in order
        for name, attr in vars(cls).items():
            if getattr(attr, _MARK, False):
                names[name] = None
            elif name in names:  # overridden without the decorator: no longer served
                del names[name]
        cls._method_names = tuple(names)

    def load_model(self) -> None:
        """Load weights and anything else the methods need. Called once per replica."""

    @overload
    @staticmethod
    def method(func: F) -> F: ...

    @overload
    @staticmethod
    def method(*, batch: bool = False, openai: str | None = None) -> Callable[[F], F]: ...

    @staticmethod
    def method(func: Any = None, *, batch: bool = False, openai: str | None = None) -> Any:
        """Mark a method of a ModelClass subclass as callable by clients.

        Use it bare (``@ModelClass.method``) or called (``@ModelClass.method()``).

        ``batch=True`` declares a batchable method: every parameter is
        ``list[T]`` (no defaults) and the return is ``list[U]`` with one result
        per input, in order. Callers never see the lists: each call sends one
        item per parameter and gets one result, and the client's signature,
        ``inspect.signature`` and the registry show the element types. A
        deployment with ``inference_batcher: {enabled: true}`` calls it with
        batches assembled from concurrent calls; otherwise with batches of one.

        ``openai="chat"`` names the method that serves the gateway's OpenAI-compatible
        ``/v1/chat/completions`` (it takes ``messages``, a list of ``{role, content}``
        dicts), ``openai="completion"`` the one for ``/v1/completions`` (it takes
        ``prompt: str``); either returns ``str`` or ``Iterator[str]``, and gets the
        sampling arguments it has parameters for (``max_tokens``, ``temperature``,
        ``top_p``, ``stop``, ``seed``).

        Example::

            class Doubler(ModelClass):
                @ModelClass.method(batch=True)
                def predict(self, x: list[int]) -> list[int]:   # callers see predict(x: int) -> int
                    return [2 * v for v in x]
        """
        if not isinstance(batch, bool):
            raise ModelDefinitionError(f"@ModelClass.method(batch=...) takes true or false, got {batch!r}")
        if openai not in (None, "chat", "completion"):
            raise ModelDefinitionError(f"@ModelClass.method(openai=...) takes 'chat' or 'completion', got {openai!r}")

        def mark(f: F) -> F:
            if not callable(f):
                raise ModelDefinitionError(f"@ModelClass.method decorates a function, got {f!r}")
            clash = ROUTING_KEYWORDS & set(f.__code__.co_varnames[: f.__code__.co_argcount
                                                                   + f.__code__.co_kwonlyargcount])
            if clash:
                name = sorted(clash)[0]
                raise ModelDefinitionError(
                    f"{f.__name__}() parameter '{name}': '{name}' is a routing keyword of the "
                    f"client ({', '.join(sorted(ROUTING_KEYWORDS))}); rename the parameter")
            setattr(f, _MARK, True)
            if batch:
                setattr(f, BATCH_MARK, True)
            if openai:
                setattr(f, OPENAI_MARK, openai)
            return f

        return mark if func is None else mark(func)

    @classmethod
    def method_specs(cls) -> dict[str, MethodSpec]:
        """The description of every ``@ModelClass.method``, by name (not cached: cheap)."""
        if not cls._method_names:
            raise ModelDefinitionError(
                f"{cls.__name__} has no @ModelClass.method; decorate at least one method")
        specs = {}
        for name in cls._method_names:
            spec = describe_method(name, getattr(cls, name))
            _check_defaults(spec)
            specs[name] = spec
        return specs


def _check_defaults(spec: MethodSpec) -> None:
    from .codec import Mismatch, encoder

    for p in spec.params:
        if p.has_default:
            try:
                encoder(p.type)(p.default)
            except Mismatch as e:
                raise ModelDefinitionError(e.describe(f"{spec.name}() default of", p.name)) from None
