"""The notebook's GPU, used as is: a torch model on cuda, in the kernel and in a runner.

Skipped where torch or an NVIDIA GPU is missing (CI has neither).
"""

from __future__ import annotations

import numpy as np
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


def test_a_deployed_torch_model_runs_on_its_gpu_and_gpus_are_never_shared(tmp_path_factory, tmp_path) -> None:
    """num_accelerators: 1 on the local backend: each replica gets a GPU of its own; more replicas
    than the host has GPUs are refused up front, and one more beside them (another deployment) waits."""
    from daemon_helpers import isolated_home, wait_for

    from jupyter_deploy import Client, ControlPlaneError, Nodepool

    count = torch.cuda.device_count()
    folder = tmp_path / "gpu"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(GPU_MODEL)
    (folder / "config.yaml").write_text("model:\n  id: doubler\ninference_compute_info:\n  num_accelerators: 1\n")
    (folder / "requirements.txt").write_text("")
    with isolated_home(tmp_path_factory, "gpu_home"):
        client = Client()
        client.upload_model(folder)
        pool = Nodepool("local", client=client)
        with pytest.raises(ControlPlaneError, match=rf"min_replicas {count + 1} x 1 GPU\(s\) = {count + 1} GPUs; "
                           rf"the nodepool has {count} such GPU\(s\)") as refused:
            pool.create_deployment("doubler", worker={"model": {"id": "doubler"}},
                                   autoscale_config={"min_replicas": count + 1})
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        deployment = pool.create_deployment(
            "doubler", worker={"model": {"id": "doubler"}},
            autoscale_config={"min_replicas": count, "max_replicas": count})
        wait_for(lambda: sum(r["state"] == "READY" for r in deployment.status["replicas"]) == count,
                 180, f"{count} replica(s) on {count} GPU(s)")
        status = deployment.status
        assert sorted(r["gpus"] for r in status["replicas"]) == [str(i) for i in range(count)]
        model = client.model("doubler")
        assert model.device_name() in {torch.cuda.get_device_name(i) for i in range(count)}
        assert model.predict(np.arange(4, dtype=np.float32)).tolist() == [0.0, 2.0, 4.0, 6.0]
        client.compute_cluster("local").create_nodepool("more")
        extra = Nodepool("more", client=client).create_deployment("doubler2", worker={"model": {"id": "doubler"}})
        wait_for(lambda: "waiting for 1 GPU(s)" in extra.status["reason"], 60, "one more replica to wait for a GPU")
        assert extra.status["state"] == "STARTING" and extra.status["replicas"] == []
        extra.delete()
        deployment.delete()
