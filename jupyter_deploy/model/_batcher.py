"""Dynamic batching: concurrent single calls of a batchable method, served as one batch.

A method declared ``@ModelClass.method(batch=True)`` takes a list per parameter
and returns a list. Each caller's thread hands its decoded arguments to the
method's ``Batcher`` and waits; one worker thread per method takes what has
queued, up to ``max_batch_size``, waiting at most ``max_latency_ms`` after the
oldest call arrived for more to join, calls the model once, and hands every
caller its own result (or the batch's error). Callers that did not wait
(``submit_nowait``: the runner's ipc plane) get theirs from a second thread, so
the model starts on the next batch while the last one's replies are encoded and sent.

The settings come from a deployment's ``inference_batcher`` section (checked by
``jupyter_deploy.configs.BatcherConfig``, which the control plane uses too) or from
the runner's ``--inference-batcher JSON`` flag.

Example::

    settings = BatcherSettings.from_mapping({"enabled": True, "max_batch_size": 16})
    batcher = Batcher("predict", run_batch, settings)   # run_batch(list of args) -> list of outcomes
    result = batcher.submit({"x": 3}, timeout=10.0)     # blocks until its batch ran
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class BatcherSettings:
    """How a runner batches: ``enabled``, ``max_batch_size``, ``max_latency_ms``, ``timeout_ms``.

    ``max_latency_ms`` is how long the oldest queued call waits for others to
    join its batch; ``timeout_ms`` is how long a call may wait in the queue for
    its batch to start before it fails (DEADLINE_EXCEEDED).
    """

    # The defaults of ``configs.BatcherConfig``, which checks every inference_batcher section.
    enabled: bool = False
    max_batch_size: int = 32
    max_latency_ms: float = 5.0
    timeout_ms: float = 10_000

    @classmethod
    def from_mapping(cls, data: Any) -> "BatcherSettings":
        """Settings from an ``inference_batcher`` mapping, checked by ``configs.BatcherConfig``;
        ValueError listing every problem.

        >>> BatcherSettings.from_mapping({"max_batch_size": 8}).enabled
        True
        """
        if data is None:
            return cls()
        from ..configs import BatcherConfig, validate

        config, problems = validate(BatcherConfig, data)
        if problems:
            raise ValueError("; ".join(f"inference_batcher.{k}: {p}" if k else f"inference_batcher: {p}"
                                       for k, p in problems))
        return cls(**config.model_dump())

    def to_dict(self) -> dict:
        return asdict(self)


class BatchTimeout(Exception):
    """A call waited ``timeout_ms`` (or its own deadline) in the queue without its batch starting."""


class _Pending:
    """One queued call. ``done`` is a lock held until the outcome is set: a bare lock
    costs a fraction of an Event, and there is one per call."""

    __slots__ = ("args", "queued", "expires", "taken", "done", "outcome", "then")

    def __init__(self, args: Any, queued: float, expires: float, then: Callable[[Any], None] | None = None):
        self.args = args
        self.queued = queued
        self.expires = expires
        self.taken = False
        self.done = threading.Lock()
        self.done.acquire()
        self.outcome: Any = None
        self.then = then  # submit_nowait's callback

    def finish(self, outcome: Any) -> None:
        self.outcome = outcome
        self.done.release()
        if self.then is not None:
            try:
                self.then(outcome)
            except BaseException:  # noqa: BLE001 - the callback's caller is gone; the batcher goes on
                pass


class Batcher:
    """Serves one batchable method: ``submit`` blocks until the call's batch ran.

    Args:
        name: the method's name (for thread names and messages).
        run_batch: ``run_batch(list of args) -> list of outcomes``, one per input,
            in order; an outcome that is a ``BaseException`` is raised to its
            caller, anything else is returned. It must not raise.
        settings: the limits; ``enabled`` is not consulted here.

    Example::

        b = Batcher("predict", lambda batch: [a["x"] * 2 for a in batch], BatcherSettings())
        b.submit({"x": 2}, timeout=1.0)   # 4
    """

    def __init__(self, name: str, run_batch: Callable[[list[Any]], list[Any]], settings: BatcherSettings):
        self.name = name
        self._run_batch = run_batch
        self._max = settings.max_batch_size
        self._latency = settings.max_latency_ms / 1000
        self._queue_timeout = settings.timeout_ms / 1000
        self._queue: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._thread: threading.Thread | None = None
        # submit_nowait's callbacks (encode and send a reply) run here, not on the batch thread,
        # so the next batch goes to the model while the last one's replies go out.
        self._finishing: queue.SimpleQueue | None = None
        #: Sizes of the batches run, for tests and the benchmark (the last 10,000).
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)

    def submit(self, args: Any, timeout: float | None = None) -> Any:
        """Queue one call and wait for its result (its own outcome is returned or raised).

        ``timeout`` is the caller's own deadline in seconds; the queue wait is
        also bounded by ``timeout_ms``. Past either, before its batch started,
        the call raises ``BatchTimeout``; once its batch started, it waits for it.
        """
        wait = self._queue_timeout if timeout is None else min(timeout, self._queue_timeout)
        pending = self._enqueue(args, wait)
        if not pending.done.acquire(True, wait):
            with self._cond:
                if not pending.taken and pending.outcome is None:
                    self._queue.remove(pending)
                    raise BatchTimeout(f"{self.name}(): waited {wait * 1000:.0f} ms in the batch queue "
                                       "without a batch starting (inference_batcher.timeout_ms, or the "
                                       "call's deadline)")
            pending.done.acquire()  # its batch is running (or it was failed): the outcome is on its way
        outcome = pending.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def submit_nowait(self, args: Any, timeout: float | None, then: Callable[[Any], None]) -> None:
        """Queue one call without waiting: ``then(outcome)`` runs on the batcher's thread once its
        batch ran (the outcome, or a BatchTimeout/exception instance). A call whose deadline (or
        ``timeout_ms``) passed before its batch was taken gets a BatchTimeout; unlike ``submit``,
        that is noticed when the next batch is taken. For a caller that serves many calls from
        one thread (the runner's ipc loop) and must not block on any of them."""
        self._enqueue(args, self._queue_timeout if timeout is None else min(timeout, self._queue_timeout), then)

    def _enqueue(self, args: Any, wait: float, then: Callable[[Any], None] | None = None) -> _Pending:
        now = time.monotonic()
        pending = _Pending(args, now, now + wait, then)
        with self._cond:
            if self._closed:
                raise BatchTimeout(f"{self.name}(): the runner is stopping")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"batcher-{self.name}", daemon=True)
                self._thread.start()
            self._queue.append(pending)
            # Wake the worker only when it has something new to decide: a first call
            # starts its wait, a full batch ends it. Other arrivals need no wake-up.
            if len(self._queue) == 1 or len(self._queue) == self._max:
                self._cond.notify()
        return pending

    def close(self) -> None:
        """Stop the worker after the batch it is running; calls still queued fail."""
        with self._cond:
            self._closed = True
            for p in self._queue:  # under the lock: a caller timing out must see it finished
                p.finish(BatchTimeout(f"{self.name}(): the runner is stopping"))
            self._queue.clear()
            self._cond.notify_all()

    def _take(self) -> list[_Pending] | None:
        """The next batch, once it is full or its oldest call has waited ``max_latency_ms``."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            # The oldest call's wait started when it was queued, so calls that piled up
            # while the previous batch ran go at once.
            deadline = self._queue[0].queued + self._latency
            while len(self._queue) < self._max and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = []
            now = time.monotonic()
            while self._queue and len(batch) < self._max:
                p = self._queue.popleft()
                if p.expires < now:  # its caller has given up (or is about to): not worth a slot
                    p.finish(BatchTimeout(f"{self.name}(): its deadline passed in the batch queue"))
                    continue
                p.taken = True
                batch.append(p)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                if self._finishing is not None:
                    self._finishing.put(None)  # after the last batch's replies
                return
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            try:
                outcomes = self._run_batch([p.args for p in batch])
            except BaseException as e:  # run_batch should not raise; never leave a caller hanging
                outcomes = [e] * len(batch)
            later = []
            for p, outcome in zip(batch, outcomes):
                if p.then is None:
                    p.finish(outcome)  # wakes a waiting submit(): cheap
                else:
                    later.append((p, outcome))
            if later:
                self._finish_later(later)

    def _finish_later(self, finished: list[tuple[_Pending, Any]]) -> None:
        if self._finishing is None:
            self._finishing = queue.SimpleQueue()
            threading.Thread(target=self._finish, args=(self._finishing,), name=f"batcher-{self.name}-replies",
                             daemon=True).start()
        self._finishing.put(finished)

    @staticmethod
    def _finish(finishing: queue.SimpleQueue) -> None:
        while True:
            finished = finishing.get()
            if finished is None:
                return
            for p, outcome in finished:
                p.finish(outcome)
