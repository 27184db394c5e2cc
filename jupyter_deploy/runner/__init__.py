"""The runner: a process that loads one model folder and serves it over gRPC.

Start one with ``python -m jupyter_deploy.runner --model-path PATH --address
127.0.0.1:PORT``; call it with ``jupyter_deploy.RunnerClient``. The model is
loaded and called through the SDK's ``jupyter_deploy.model.ModelHost``; this
package adds what serving needs: the process (``__main__``), the gRPC service,
its stream sending (``_pump``), resource limits and the inference log
(``_telemetry``).
"""
