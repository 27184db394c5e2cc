"""Names that two processes must spell alike: gRPC metadata keys, error names, telemetry files.

A runner, the control plane and the client each write what another one reads,
so every key and field name they exchange lives here, once. This module imports
nothing, so every layer (model, runner, control, client) may import it.

Example::

    from jupyter_deploy import _wire

    metadata = [(_wire.ROUTE_TOKEN_KEY, token)]
    kind = dict(error.trailing_metadata()).get(_wire.ERROR_TYPE_KEY, "")
"""

# ---------------------------------------------------------------- gRPC metadata

#: A control-plane call's credentials: ``authorization: Bearer <token>``.
AUTHORIZATION_KEY = "authorization"
BEARER_PREFIX = "Bearer "
#: The route token (``_tokens.sign``) a runner started by the control plane requires.
ROUTE_TOKEN_KEY = "jd-route-token"
#: Trailing metadata of a failed unary call: the exception class, and the model's traceback
#: (a ``-bin`` key: gRPC carries its value as bytes).
ERROR_TYPE_KEY = "jd-error-type"
ERROR_TRACEBACK_KEY = "jd-error-traceback-bin"

# ---------------------------------------------------------------- error names
# A failed call carries a gRPC status code name and an error type (the exception class);
# the client turns these into its own exceptions (``client._methods.call_error``).

#: The status of a call refused for its inputs (the client raises InputError).
INVALID_ARGUMENT = "INVALID_ARGUMENT"
#: The status of a call the model (or its transformer) raised in.
UNKNOWN = "UNKNOWN"
#: Error types the client maps to its own exception classes.
TRANSFORMER_ERROR = "TransformerError"
RETURN_TYPE_ERROR = "ReturnTypeError"

# ---------------------------------------------------------------- a runner's environment
# The control plane sets these when it starts a runner (``control._scheduler``); the runner reads them.

#: The Ed25519 public key (hex) that checks the runner's route tokens (``_tokens``).
VERIFY_KEY_ENV = "JUPYTER_DEPLOY_VERIFY_KEY"
#: Where the runner builds and caches model environments (``environment``).
ENVS_ENV = "JUPYTER_DEPLOY_ENVS"
def ipc_file(port_file):
    """Where a runner started with ``--port-file PATH`` writes its ipc endpoint (``runner._ipc``):
    beside it, ``.port`` becoming ``.ipc``. A file of its own, so that readers of the port file
    (the Ray actor, older daemons) still read just a port."""
    return port_file.with_suffix(".ipc")


#: ``grpc`` turns the same-host ipc data plane off: in a client's environment its calls go over
#: gRPC (as a remote caller's do); in a runner's, it serves no ipc socket (``runner._ipc``).
DATA_PLANE_ENV = "JUPYTER_DEPLOY_DATA_PLANE"
#: ``0`` (or ``off``) in a client's environment: its concurrent unary calls over gRPC go one RPC
#: each, not combined into PredictMany RPCs (``client._combine``).
COMBINE_ENV = "JUPYTER_DEPLOY_COMBINE"
#: A caller's combined calls to one runner (the client's and the gateway's ``_combine``): RPCs
#: out at once, calls in one PredictBatch at most, and the request size from which a call goes
#: alone. Two in flight measured best: one being answered while the next one fills (W1b over
#: gRPC: 1 gave 6,150-6,680 calls/s, 2 gave 6,060-7,240, 3 and 4 only 3,600-4,500).
COMBINE_IN_FLIGHT = 2
COMBINE_MAX_CALLS = 64
COMBINE_UNDER = 64 << 10


def combining(environ: dict) -> bool:
    """Whether a process with ``environ`` (``os.environ``) combines its concurrent calls to a
    runner: ``COMBINE_ENV`` not set off."""
    return environ.get(COMBINE_ENV, "").strip().lower() not in ("0", "off", "false", "no")

# ---------------------------------------------------------------- telemetry spool
# A runner writes, the control plane reads (``runner._telemetry``, ``control._calllog``).

#: The runner's telemetry directory, one per replica, set by the control plane.
TELEMETRY_ENV = "JUPYTER_DEPLOY_TELEMETRY"
#: Per deployment, beside the replicas' directories: the inference logger's settings.
LOGGING_FILE = "logging.json"
#: Per replica: the latest load figures, replaced atomically every tick.
STATS_FILE = "stats.json"
#: Per replica: why the model failed to start (its own exception, in ``load_model``, ``test``, the
#: import of model.py or the transformer), written just before the runner exits. The control plane
#: fails the deployment with it at once instead of restarting the replica (``control._scheduler``).
FAILURE_FILE = "failure.json"
#: A failure record's fields (``step`` is e.g. ``"load_model"``, ``"test"``, ``"import"``).
FAIL_STEP, FAIL_TYPE, FAIL_MESSAGE, FAIL_TRACEBACK = "step", "type", "message", "traceback"
#: Per replica: what a starting runner is doing (``{"step": ..., "since": epoch seconds}``, step one
#: of ``environment``, ``import``, ``load_model``, ``test``), shown while its deployment waits.
STEP_FILE = "step.json"
#: Per replica: record segments ``NNNNNNNNNN.jsonl``, one JSON record a line.
SEGMENT_SUFFIX = ".jsonl"

#: A record's fields (short: a busy runner writes thousands of lines a second).
REC_TIME = "t"          # epoch seconds the runner received the call
REC_ID = "id"           # the request id
REC_CALLER = "c"        # the caller named by the route token
REC_METHOD = "m"
REC_STATUS = "s"        # a gRPC status code name, "OK" on success
REC_LATENCY = "l"       # milliseconds
REC_BYTES_IN = "bi"
REC_BYTES_OUT = "bo"
REC_VERSION = "v"       # the model version id
REC_ERROR = "e"         # {"code", "type", "message"} of a failed call
REC_INPUTS = "in"       # what the inference logger keeps
REC_OUTPUTS = "out"

#: ``stats.json``'s fields that the control plane reads.
STAT_TIME = "t"
STAT_IN_FLIGHT = "in_flight"
STAT_QUEUED = "queued"
STAT_AVG_IN_FLIGHT = "avg_in_flight"
STAT_LAST_REQUEST_AT = "last_request_at"
