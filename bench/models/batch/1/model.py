"""The W3 model (shared/BENCHMARKS.md): dynamic batching against a lock-bound cost."""

import threading
import time

from jupyter_deploy import ModelClass

#: One call or batch at a time, like one accelerator: without the lock a thread pool
#: would get free parallelism out of sleep().
_DEVICE = threading.Lock()


class Batch(ModelClass):
    """``echo`` costs ``0.002 + 0.0001 * batch_size`` seconds per call on a batch."""

    def load_model(self):
        self.batches = 0
        self.items = 0

    @ModelClass.method(batch=True)
    def echo(self, text: list[str]) -> list[str]:
        """W3: return each text unchanged (callers see ``echo(text: str) -> str``)."""
        with _DEVICE:
            time.sleep(0.002 + 0.0001 * len(text))
            self.batches += 1
            self.items += len(text)
        return text

    @ModelClass.method
    def stats(self) -> dict[str, int]:
        """Batches run and items served so far (the mean batch size is their ratio)."""
        return {"batches": self.batches, "items": self.items}
