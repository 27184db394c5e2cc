"""Python functions that mirror a model's methods, over any transport.

A transport moves encoded calls (``unary``, ``server_stream``, ``bidi``); the
functions built here give each model method its declared signature, encode
the arguments, and decode what comes back. ``MethodMirror`` makes them methods
of an object: the runner client, the local test and the registry's ``Model``
share it, so a method looks and fails the same wherever it runs.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

from .. import _wire
from ..errors import DeployError, InputError, ModelError, RunnerError, TransformerError
from ..model import MethodSpec
from ..model.codec import Mismatch, decoder, encode_request, encode_value
from ..model.signature import BIDI, UNARY, TypeNode
from ..proto import runner_pb2 as pb

_MEDIA = frozenset({"bytes", "image", "audio", "video"})


class Transport(Protocol):
    # ``raw``: large ``bytes`` arguments kept out of ``request`` (``codec.encode_request``); a
    # transport that cannot send them apart puts them back in (``codec.add_raw``).
    def unary(self, request: pb.PredictRequest, raw: dict[str, bytes] | None = None) -> pb.Value: ...
    def server_stream(self, request: pb.PredictRequest) -> Iterator[pb.Value]: ...
    def bidi(self, request: pb.PredictRequest, items: Iterator[pb.Value]) -> Iterator[pb.Value]: ...


#: The transport of one call, picked from its routing keywords (see ``build_methods``).
Routes = Callable[..., Transport]


def call_error(code: str, type: str, message: str, traceback: str = "") -> DeployError:
    """The exception a caller sees for a failed call (from a status or an error frame)."""
    if code == _wire.INVALID_ARGUMENT:
        return InputError(message)
    if type == _wire.TRANSFORMER_ERROR:
        return TransformerError(message, traceback)
    if code == _wire.UNKNOWN or type == _wire.RETURN_TYPE_ERROR:
        return ModelError(type or "Exception", message, traceback)
    return RunnerError(f"{code}: {message}" if code else message, code)


class MethodMirror:
    """Base class of an object whose methods mirror the methods a model declares.

    ``_mirror`` sets ``specs`` and ``methods`` and makes each method an attribute
    (one the class defines itself is never hidden); ``dir()`` lists them.

    Example::

        class LocalModel(MethodMirror):
            def __init__(self, host):
                self._mirror(host.specs, _LocalTransport(host))

        LocalModel(host).predict("hi")
    """

    specs: dict[str, MethodSpec]
    methods: dict[str, Callable[..., Any]]

    def _mirror(self, specs: Mapping[str, MethodSpec], transport: Transport | Routes,
                routing: Sequence[str] = ()) -> None:
        """Mirror ``specs`` over ``transport`` (see ``build_methods`` for ``routing``)."""
        self.specs = dict(specs)
        self.methods = build_methods(self.specs.values(), transport, routing)
        for name, fn in self.methods.items():
            if not hasattr(type(self), name):
                setattr(self, name, fn)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.methods))


def build_methods(specs: Iterable[MethodSpec], transport: Transport | Routes,
                  routing: Sequence[str] = ()) -> dict[str, Callable[..., Any]]:
    """One function per method, plus ``<name>_by_url/_by_bytes/_by_filepath`` for media inputs.

    ``transport`` is a ``Transport``. With ``routing`` (keyword names), every function
    also takes those keywords (default None) and ``transport`` is instead a function of
    them that returns the ``Transport`` of that one call.
    """
    out: dict[str, Callable[..., Any]] = {}
    for spec in specs:
        fn = _method(spec, transport, tuple(routing))
        out[spec.name] = fn
        media = _first_media_param(spec)
        if media is not None:
            for suffix, wrap in (("url", _url), ("bytes", _bytes), ("filepath", _filepath)):
                out.setdefault(f"{spec.name}_by_{suffix}", _by(fn, spec, media, suffix, wrap))
    return out


def _method(spec: MethodSpec, transport: Transport | Routes,
            routing: tuple[str, ...]) -> Callable[..., Any]:
    sig = spec.signature()
    decode_out = decoder(spec.returns)
    what = f"{spec.name}() output"
    stream = spec.stream_param

    bind = _binder(spec, sig)

    def call(*args: Any, **kwargs: Any) -> Any:
        # The route is picked (and checked) first, as the routing keywords are not the method's.
        chosen = transport(**{k: kwargs.pop(k, None) for k in routing}) if routing else transport
        try:
            arguments = bind(args, kwargs)
        except TypeError as e:
            raise InputError(f"{spec.name}(): {e}") from None
        if spec.shape == UNARY:
            raw: dict[str, bytes] = {}
            request = encode_request(spec, arguments, raw=raw)
            return _decoded(decode_out, chosen.unary(request, raw) if raw else chosen.unary(request), what)
        request = encode_request(spec, arguments)
        if spec.shape == BIDI:
            items = _encoded_items(stream.type, arguments.get(stream.name), spec.name, stream.name)
            return _decoded_stream(decode_out, chosen.bidi(request, items), what)
        return _decoded_stream(decode_out, chosen.server_stream(request), what)

    keywords = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation="str | None") for k in routing]
    call.__name__ = call.__qualname__ = spec.name
    call.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*sig.parameters.values(), *keywords])
    call.__doc__ = spec.doc or f"Call the model's {spec.name}{sig}."
    return call


def _binder(spec: MethodSpec, sig: inspect.Signature) -> Callable[[tuple, dict], dict[str, Any]]:
    """``sig.bind(*args, **kwargs).arguments`` for ``spec``'s parameters, without ``bind``'s cost
    (a few microseconds a call) for a call that is plainly right; ``bind`` still checks, and
    words the TypeError of, every other one."""
    positional = tuple(p.name for p in spec.params if not p.keyword_only)
    names = frozenset(p.name for p in spec.params)
    required = frozenset(p.name for p in spec.params if not p.has_default)

    def bind(args: tuple, kwargs: dict) -> dict[str, Any]:
        if len(args) <= len(positional):
            arguments = kwargs
            if args:
                arguments = dict(zip(positional, args))
                if arguments.keys() & kwargs.keys():
                    return sig.bind(*args, **kwargs).arguments  # given twice: bind says so
                arguments.update(kwargs)
            if arguments.keys() <= names and required <= arguments.keys():
                return arguments
        return sig.bind(*args, **kwargs).arguments
    return bind


def _decoded(decode: Callable[[pb.Value], Any], value: pb.Value, what: str) -> Any:
    try:
        return decode(value)
    except Mismatch as e:
        raise InputError(e.describe(what)) from None


def _decoded_stream(decode: Callable[[pb.Value], Any], values: Iterator[pb.Value], what: str) -> Iterator[Any]:
    try:
        for value in values:
            yield _decoded(decode, value, what)
    finally:
        close = getattr(values, "close", None)
        if close is not None:
            close()  # stop the remote generator when the caller stops reading


def _encoded_items(node: TypeNode, items: Any, method: str, param: str) -> Iterator[pb.Value]:
    if items is None or isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise InputError(f"{method}() parameter '{param}': expected an iterable of {node}, "
                         f"got {type(items).__name__}")
    for i, item in enumerate(items):
        yield encode_value(node, item, f"{method}() parameter '{param}' item {i}", media_refs=True)


def _first_media_param(spec: MethodSpec) -> Any:
    for p in spec.params:
        node = p.type.args[0] if p.type.kind == "optional" else p.type
        if node.kind in _MEDIA:
            return p
    return None


def _url(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InputError(f"expected an http(s) URL, got {value!r}")
    return value


def _bytes(value: Any) -> Any:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InputError(f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _filepath(value: Any) -> Any:
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"expected a file path, got {type(value).__name__}")
    from pathlib import Path

    return Path(value)


def _by(fn: Callable[..., Any], spec: MethodSpec, param: Any, suffix: str,
        wrap: Callable[[Any], Any]) -> Callable[..., Any]:
    def call(value: Any, **kwargs: Any) -> Any:
        if param.stream:
            kwargs[param.name] = (wrap(v) for v in value)
        else:
            kwargs[param.name] = wrap(value)
        return fn(**kwargs)

    name = f"{spec.name}_by_{suffix}"
    call.__name__ = call.__qualname__ = name
    call.__doc__ = (f"Call {spec.name}() with its '{param.name}' parameter given by "
                    f"{suffix}; other parameters by keyword.")
    rest = [p for n, p in inspect.signature(fn).parameters.items() if n != param.name]
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(suffix, inspect.Parameter.POSITIONAL_ONLY)]
        + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest])
    return call
