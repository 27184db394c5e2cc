"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) on its own port.

The same operations as the REST form (``_oip.OIP``), in the same process and event loop;
the caller's token comes in the ``authorization`` metadata (``Bearer <PAT>``). Outputs are
sent as ``raw_output_contents``; inputs are read from ``contents`` or ``raw_input_contents``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from .._version import __version__
from ..proto import oip_pb2 as pb
from ..proto import oip_pb2_grpc
from . import _tensors
from ._oip import EXTENSIONS, SERVER, Input
from ._routes import GatewayError

_CODES = {"MODEL_ERROR": grpc.StatusCode.UNKNOWN, "PAYLOAD_TOO_LARGE": grpc.StatusCode.RESOURCE_EXHAUSTED,
          "METHOD_NOT_ALLOWED": grpc.StatusCode.UNIMPLEMENTED}
#: The contents field of each datatype.
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _pat(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() in ("bearer", "key") and token.strip():
                return token.strip()
    raise GatewayError(401, "UNAUTHENTICATED", "no token: send the metadata 'authorization: Bearer <personal "
                       "access token>'")


def _status(e: GatewayError) -> grpc.StatusCode:
    return _CODES.get(e.code) or getattr(grpc.StatusCode, e.code, None) or grpc.StatusCode.UNKNOWN


class Servicer(oip_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, app: Any):
        self.app = app
        self.oip = app.oip

    async def _run(self, context: Any, fn: Any) -> Any:
        try:
            return await fn()
        except GatewayError as e:
            await context.abort(_status(e), e.message)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=await self.app.routes.daemon_ready())

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER, version=__version__, extensions=EXTENSIONS)

    async def ModelReady(self, request, context):
        async def ready():
            try:
                await self.oip.resolve(_pat(context), request.name, request.version)
            except GatewayError as e:
                if e.status != 503:
                    raise
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._run(context, ready)

    async def ModelMetadata(self, request, context):
        async def meta():
            _, route = await self.oip.resolve(_pat(context), request.name, request.version)
            m = self.oip.model_metadata(request.name, route)
            return pb.ModelMetadataResponse(
                name=m["name"], versions=m["versions"], platform=m["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in m["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in m["outputs"]])

        return await self._run(context, meta)

    async def ModelInfer(self, request, context):
        async def infer():
            pat = _pat(context)
            raw = list(request.raw_input_contents)
            if raw and len(raw) != len(request.inputs):
                raise GatewayError(400, "INVALID_ARGUMENT", "raw_input_contents needs one entry per input")
            inputs = []
            for i, t in enumerate(request.inputs):
                if raw:
                    data: Any = raw[i]
                else:
                    field = _CONTENTS.get(t.datatype)
                    if field is None:
                        raise GatewayError(400, "INVALID_ARGUMENT", f"input '{t.name}': datatype {t.datatype} "
                                           "needs raw_input_contents", parameter=t.name)
                    data = list(getattr(t.contents, field))
                inputs.append(Input(t.name, t.datatype, list(t.shape), data))
            method = request.parameters["method"].string_param if "method" in request.parameters else None
            route, outs = await self.oip.infer(pat, request.model_name, request.model_version, method, inputs)
            wanted = {o.name for o in request.outputs}
            unknown = wanted - {o[0] for o in outs}
            if unknown:
                raise GatewayError(400, "INVALID_ARGUMENT", f"no output {sorted(unknown)[0]!r}")
            response = pb.ModelInferResponse(model_name=request.model_name, model_version=route.version_id,
                                             id=request.id)
            for name, datatype, shape, arr in outs:
                if wanted and name not in wanted:
                    continue
                response.outputs.add(name=name, datatype=datatype, shape=shape)
                response.raw_output_contents.append(_tensors.raw_data(datatype, arr))
            return response

        return await self._run(context, infer)


async def start_grpc(app: Any, address: str, tls_cert: str | None, tls_key: str | None) -> grpc.aio.Server:
    """Start the service on ``address`` (TLS with the PEM files, if given); the started server."""
    limit = app.body_limit
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
    oip_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(app), server)
    if tls_cert and tls_key:
        credentials = grpc.ssl_server_credentials([(Path(tls_key).read_bytes(), Path(tls_cert).read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"the gateway cannot listen on {address} (gRPC)")
    await server.start()
    return server
