"""The notebook's GPU, used as is: a torch model on cuda, in the kernel and in a runner.

Skipped where torch or an NVIDIA GPU is missing (CI has neither).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

GPU_MODEL = '''
import numpy as np
import torch
from jupyter_deploy import ModelClass

class Doubler(ModelClass):
    def load_model(self):
        self.device = torch.device("cuda")
        self.weight = torch.full((4,), 2.0, device=self.device)

    @ModelClass.method
    def predict(self, x: np.ndarray) -> np.ndarray:
        out = torch.as_tensor(x, device=self.device) * self.weight
        return out.cpu().numpy()

    @ModelClass.method
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.weight.device)
'''


def test_a_cuda_model_runs_in_the_kernel_through_the_codec() -> None:
    import numpy as np

    from jupyter_deploy import load_local

    model = load_local(GPU_MODEL)
    out = model.predict(np.arange(4, dtype=np.float32))
    assert out.dtype == np.float32
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert model.device_name() == torch.cuda.get_device_name(0)
