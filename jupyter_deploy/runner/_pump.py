"""Sending a model's stream: its items are produced in a thread of their own and sent in groups.

A streaming gRPC call sends one response per group of waiting items, not one per item,
so a fast generator is not held to the speed of one send per item.

Example::

    pump = Pump(host.stream(request))
    for items in pump.batches():
        yield pb.StreamResponse(items=items)
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Iterator

from ..proto import runner_pb2 as pb

_SMALL = frozenset({"int", "float", "bool", "none"})


class Pump:
    """Runs a stream's producer in its own thread, so items pile up while the
    consumer sends, and the consumer takes all waiting items at once.

    ``batches()`` yields lists of items (never empty) with no added wait: the
    first item goes out as soon as it exists. ``stop()`` makes the producer
    close the model's generator after its current item.
    """

    def __init__(self, source: Iterator[pb.Value], max_items: int = 4096, max_bytes: int = 1 << 20,
                 max_queue: int = 16384, max_queue_bytes: int = 4 << 20):
        self._source = source
        self._items: collections.deque = collections.deque()  # (item, its size)
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._done = False
        self._error: BaseException | None = None
        self._stopped = False
        self._max_items, self._max_bytes, self._max_queue = max_items, max_bytes, max_queue
        # Large items fill a count bound slowly: 16384 items of 1 MiB would be 16 GiB waiting.
        self._max_queue_bytes = max_queue_bytes
        self._thread = threading.Thread(target=self._produce, name="stream-producer", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._source:
                kind = item.WhichOneof("kind")
                size = len(item.str) if kind == "str" else 16 if kind in _SMALL else item.ByteSize()
                with self._cond:
                    # The consumer is slower: hold the model back (its sends wake this wait).
                    while ((len(self._items) >= self._max_queue or self._queued_bytes >= self._max_queue_bytes)
                           and not self._stopped):
                        self._cond.wait(0.1)
                    if self._stopped:
                        break
                    self._items.append((item, size))
                    self._queued_bytes += size
                    first = len(self._items) == 1
                    self._cond.notify_all()
                if first:
                    # Give up the GIL now, or a fast generator makes every item before
                    # the sender wakes, and the first item waits for the last.
                    time.sleep(0)
        except BaseException as e:  # handed to the consumer, which reports it
            self._error = e
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # the model's finally raised while being cancelled: nobody to tell
                    pass
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def batches(self, wait: float = 0.5) -> Iterator[list[pb.Value]]:
        """Yield waiting items in groups; raise the producer's error at the end."""
        while True:
            with self._cond:
                while not self._items and not self._done and not self._stopped:
                    self._cond.wait(wait)
                if self._stopped:
                    return
                batch, size = [], 0
                while self._items and len(batch) < self._max_items and size < self._max_bytes:
                    item, n = self._items.popleft()
                    batch.append(item)
                    size += n
                self._queued_bytes -= size
                done = self._done and not self._items
                self._cond.notify_all()
            if batch:
                yield batch
            if done:
                if self._error is not None:
                    raise self._error
                return
