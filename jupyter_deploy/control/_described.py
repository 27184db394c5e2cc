"""What a version says about itself, read by the daemon instead of taken from the uploader.

An upload's header carries what the client read from the folder in its own interpreter.
Nothing in it is taken on trust:

- ``config.yaml``: read from the archive and checked here (``archive_config``); the header's
  ``config_json`` is ignored. The archive is what runners run, so its config is the truth,
  and there is nothing a client's copy could add. Ignored rather than compared and refused:
  a client whose config defaults differ (another release) would be refused for nothing.
- the method descriptions: they come from importing the model, which the daemon never does
  in its own process. The header's are checked for form (``checked_description``: names,
  shapes, types, defaults a client can decode, a size cap), so they cannot break the clients
  that mirror them, and shown until a replica serves the version: then its ``Describe``
  answer, from the code that really serves, replaces them (``ServedDescriptions``). Asking a
  replica costs the upload nothing; describing at upload time in a subprocess would add an
  interpreter start and the model's imports (seconds for torch) to every upload, for an
  answer from the same code.
- the interpreter: ``_interpreters``.

Example::

    config = archive_config(blobs.path(sha))                       # InvalidArgument if not valid
    description = checked_description(header.description)           # its form; InvalidArgument if bad
    served = ServedDescriptions(registry.served_description)
    served.replica_ready(version_id, "127.0.0.1:50051")            # from the scheduler's thread
"""

from __future__ import annotations

import keyword
import logging
import queue
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

from ..proto import runner_pb2 as pb
from ._errors import InvalidArgument

log = logging.getLogger("jupyter_deploy.registry")

#: Bigger than any config.yaml written by hand; what is larger is not one.
MAX_CONFIG_BYTES = 1 << 20
#: A description is signatures and docstrings: this is far beyond any real one.
MAX_DESCRIPTION_BYTES = 1 << 20
MAX_TYPE_DEPTH = 32
#: Seconds a replica has to answer Describe.
DESCRIBE_TIMEOUT = 10.0

_SHAPES = ("unary", "server_stream", "bidi")
_LEAVES = {"str", "bytes", "int", "float", "bool", "none", "json", "image", "ndarray", "dataframe",
           "concept", "region", "frame", "audio", "video"}
_WRAPPERS = {"optional", "list", "dict"}
# Defaults of these kinds are decoded here as a client would; the others would import Pillow,
# numpy or pandas into the daemon to do so.
_HEAVY = {"image", "ndarray", "dataframe", "frame"}
_ROUTING = frozenset({"deployment_id", "compute_cluster_id", "nodepool_id"})


def archive_config(archive: Path) -> dict:
    """The archive's ``config.yaml``, checked, as the plain data stored with the version.

    InvalidArgument when it is missing, not a regular file, too big, not UTF-8 or not valid
    (the message lists every problem).
    """
    from ..config import parse_config
    from ..errors import ConfigError

    try:
        with tarfile.open(archive, "r:") as tar:
            # The last member of a name is the one extraction leaves, so it is the one read.
            member = tar.getmember("config.yaml")
            if not member.isfile():
                raise InvalidArgument("the archive's config.yaml is not a regular file; pack the folder "
                                      "with Client.upload_model or `jupyter-deploy upload`")
            if member.size > MAX_CONFIG_BYTES:
                raise InvalidArgument(f"the archive's config.yaml has {member.size} bytes; a config.yaml "
                                      f"has at most {MAX_CONFIG_BYTES}")
            data = tar.extractfile(member).read()
    except (KeyError, tarfile.TarError) as e:
        raise InvalidArgument(f"cannot read config.yaml from the archive ({e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"the archive's config.yaml is not UTF-8 text ({e})") from None
    try:
        return parse_config(text, "config.yaml").to_dict()
    except ConfigError as e:
        raise InvalidArgument(f"the archive's config.yaml is not valid:\n{e}") from None


def _name_problem(name: str, what: str) -> str | None:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        return f"{what} {name[:80]!r} is not a Python identifier"
    return None


def _type_problem(t: pb.Type, where: str, depth: int = 0) -> str | None:
    if depth > MAX_TYPE_DEPTH:
        return f"{where}: types nest more than {MAX_TYPE_DEPTH} levels"
    if t.kind in _LEAVES:
        arity = 0
    elif t.kind in _WRAPPERS:
        arity = 1
    elif t.kind == "dataclass":
        problem = _name_problem(t.name, f"{where}: dataclass name")
        if problem or t.args:
            return problem or f"{where}: a dataclass type has fields, not arguments"
        seen = set()
        for f in t.fields:
            problem = _name_problem(f.name, f"{where}: field") or (
                f"{where}: field {f.name!r} is named twice" if f.name in seen else None)
            seen.add(f.name)
            problem = problem or _type_problem(f.type, f"{where} field {f.name!r}", depth + 1)
            if problem:
                return problem
        return None
    else:
        return f"{where}: unknown type kind {t.kind[:40]!r}"
    if len(t.args) != arity or t.fields:
        return f"{where}: type {t.kind} takes {arity} argument(s), got {len(t.args)}"
    for arg in t.args:
        problem = _type_problem(arg, where, depth + 1)
        if problem:
            return problem
    return None


def _heavy(t: pb.Type) -> bool:
    return t.kind in _HEAVY or any(_heavy(a) for a in t.args) or any(_heavy(f.type) for f in t.fields)


def _method_problem(m: pb.MethodDescription) -> str | None:
    where = f"method {m.name[:80]!r}"
    problem = _name_problem(m.name, "method name")
    if problem:
        return problem
    if m.shape not in _SHAPES:
        return f"{where}: unknown shape {m.shape[:40]!r} (one of {', '.join(_SHAPES)})"
    seen: set[str] = set()
    streams = 0
    for p in m.parameters:
        pwhere = f"{where} parameter {p.name[:80]!r}"
        problem = _name_problem(p.name, f"{where}: parameter")
        if problem:
            return problem
        if p.name in seen or p.name in _ROUTING:
            return f"{pwhere}: named twice" if p.name in seen else f"{pwhere}: a routing keyword"
        seen.add(p.name)
        streams += p.stream
        problem = _type_problem(p.type, pwhere)
        if problem:
            return problem
        if p.has_default and not _heavy(p.type):
            problem = _default_problem(p, pwhere)
            if problem:
                return problem
    if streams != (m.shape == "bidi"):
        return f"{where}: a {m.shape} method has {streams} Iterator parameter(s)"
    return _type_problem(m.returns, f"{where} return")


def _default_problem(p: pb.Parameter, where: str) -> str | None:
    # A client rebuilds the signature from this: a default it cannot decode would break its
    # mirror of every method of the model.
    from ..model.codec import decoder
    from ..model.signature import type_from_proto, with_classes

    try:
        decoder(with_classes(type_from_proto(p.type)))(p.default)
    except Exception as e:  # noqa: BLE001 - any failure to decode it is the header's fault
        return f"{where}: its default does not decode as its type ({str(e)[:200]})"
    return None


def checked_description(description: pb.ModelDescription) -> pb.ModelDescription:
    """A copy of ``description`` once its form checks out; InvalidArgument naming the first problem
    otherwise."""
    size = description.ByteSize()
    if size > MAX_DESCRIPTION_BYTES:
        raise InvalidArgument(f"the upload's method descriptions have {size} bytes, more than "
                              f"{MAX_DESCRIPTION_BYTES}; upload with Client.upload_model")
    names: set[str] = set()
    for m in description.methods:
        problem = _method_problem(m) or (f"method {m.name!r} is described twice" if m.name in names else None)
        if problem:
            raise InvalidArgument(f"the upload's method descriptions are not valid: {problem}; "
                                  "upload with Client.upload_model or `jupyter-deploy upload`")
        names.add(m.name)
    checked = pb.ModelDescription()
    checked.CopyFrom(description)
    return checked


class ServedDescriptions:
    """Replaces a version's stored description with what its first READY replica answers to
    ``Describe``, once per version per daemon, on a thread of its own (a replica that does not
    answer never holds up the scheduler).

    Args:
        store_served: ``(version_id, description)`` -> called with each answer (the registry
            keeps it if it differs from what is stored).
    """

    def __init__(self, store_served: Callable[[str, pb.ModelDescription], None]):
        self._store_served = store_served
        self._lock = threading.Lock()
        self._done: set[str] = set()
        self._queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def replica_ready(self, version_id: str, address: str) -> None:
        """A replica of ``version_id`` serves at ``address``: ask it, unless one was asked already."""
        with self._lock:
            if version_id in self._done:
                return
            self._done.add(version_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jupyter_deploy-describe", daemon=True)
                self._thread.start()
        self._queue.put((version_id, address))

    def _run(self) -> None:
        while True:
            version_id, address = self._queue.get()
            try:
                self._store_served(version_id, self._ask(address))
            except Exception as e:  # noqa: BLE001 - the next READY replica of the version asks again
                log.info("version %s: no description from its replica at %s (%s)", version_id, address, e)
                with self._lock:
                    self._done.discard(version_id)

    @staticmethod
    def _ask(address: str) -> pb.ModelDescription:
        import grpc

        from ..proto import runner_pb2_grpc

        with grpc.insecure_channel(address) as channel:
            return runner_pb2_grpc.RunnerStub(channel).Describe(pb.DescribeRequest(), timeout=DESCRIBE_TIMEOUT)
