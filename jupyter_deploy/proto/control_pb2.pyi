from jupyter_deploy.proto import runner_pb2 as _runner_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Info(_message.Message):
    __slots__ = ("version", "pid", "home", "user_id", "address", "gateway_url", "gateway_grpc_address")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_URL_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    version: str
    pid: int
    home: str
    user_id: str
    address: str
    gateway_url: str
    gateway_grpc_address: str
    def __init__(self, version: _Optional[str] = ..., pid: _Optional[int] = ..., home: _Optional[str] = ..., user_id: _Optional[str] = ..., address: _Optional[str] = ..., gateway_url: _Optional[str] = ..., gateway_grpc_address: _Optional[str] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("stop_runners",)
    STOP_RUNNERS_FIELD_NUMBER: _ClassVar[int]
    stop_runners: bool
    def __init__(self, stop_runners: bool = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LimitsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class Limit(_message.Message):
    __slots__ = ("name", "value", "used", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    used: float
    description: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., used: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("user_id", "limits")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    def __init__(self, user_id: _Optional[str] = ..., limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("user_id", "app_id", "model_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    app_id: str
    model_id: str
    def __init__(self, user_id: _Optional[str] = ..., app_id: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("model", "sha256", "size", "description", "config_json", "python", "description_text")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_TEXT_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    sha256: str
    size: int
    description: _runner_pb2.ModelDescription
    config_json: str
    python: str
    description_text: str
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., description: _Optional[_Union[_runner_pb2.ModelDescription, _Mapping]] = ..., config_json: _Optional[str] = ..., python: _Optional[str] = ..., description_text: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("id", "model", "number", "sha256", "size", "description", "config_json", "python", "created_at", "deduplicated")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: ModelRef
    number: int
    sha256: str
    size: int
    description: _runner_pb2.ModelDescription
    config_json: str
    python: str
    created_at: float
    deduplicated: bool
    def __init__(self, id: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., number: _Optional[int] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., description: _Optional[_Union[_runner_pb2.ModelDescription, _Mapping]] = ..., config_json: _Optional[str] = ..., python: _Optional[str] = ..., created_at: _Optional[float] = ..., deduplicated: bool = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("ref", "created_at", "version_count", "latest", "visibility")
    REF_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    ref: ModelRef
    created_at: float
    version_count: int
    latest: ModelVersion
    visibility: str
    def __init__(self, ref: _Optional[_Union[ModelRef, _Mapping]] = ..., created_at: _Optional[float] = ..., version_count: _Optional[int] = ..., latest: _Optional[_Union[ModelVersion, _Mapping]] = ..., visibility: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("user_id", "app_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    app_id: str
    def __init__(self, user_id: _Optional[str] = ..., app_id: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class VersionRef(_message.Message):
    __slots__ = ("model", "version_id", "number")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    version_id: str
    number: int
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., version_id: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model", "version_id", "force")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    version_id: str
    force: bool
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., version_id: _Optional[str] = ..., force: bool = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    sha256: str
    def __init__(self, data: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("kind", "id", "user_id", "compute_cluster_id", "nodepool_id", "config_json", "status_json", "created_at")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODEPOOL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    user_id: str
    compute_cluster_id: str
    nodepool_id: str
    config_json: str
    status_json: str
    created_at: float
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., user_id: _Optional[str] = ..., compute_cluster_id: _Optional[str] = ..., nodepool_id: _Optional[str] = ..., config_json: _Optional[str] = ..., status_json: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class ResourceRef(_message.Message):
    __slots__ = ("kind", "id", "user_id", "compute_cluster_id", "nodepool_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODEPOOL_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    user_id: str
    compute_cluster_id: str
    nodepool_id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., user_id: _Optional[str] = ..., compute_cluster_id: _Optional[str] = ..., nodepool_id: _Optional[str] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("ref", "config_json")
    REF_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    config_json: str
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., config_json: _Optional[str] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("ref", "config_json", "hot")
    REF_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    HOT_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    config_json: str
    hot: str
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., config_json: _Optional[str] = ..., hot: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("parent",)
    PARENT_FIELD_NUMBER: _ClassVar[int]
    parent: ResourceRef
    def __init__(self, parent: _Optional[_Union[ResourceRef, _Mapping]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[ResourceRef]
    def __init__(self, refs: _Optional[_Iterable[_Union[ResourceRef, _Mapping]]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActionRequest(_message.Message):
    __slots__ = ("ref", "action")
    REF_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    action: str
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., action: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("ref", "lines")
    REF_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    lines: int
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., lines: _Optional[int] = ...) -> None: ...

class LogsResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class VisibilityRequest(_message.Message):
    __slots__ = ("model", "visibility")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    visibility: str
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., visibility: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "created_at", "admin")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: float
    admin: bool
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[float] = ..., admin: bool = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class NewToken(_message.Message):
    __slots__ = ("id", "user_id", "token")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    user_id: str
    token: str
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class UserWithToken(_message.Message):
    __slots__ = ("user", "token")
    USER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: User
    token: NewToken
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., token: _Optional[_Union[NewToken, _Mapping]] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("id", "user_id", "created_at", "revoked_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    user_id: str
    created_at: float
    revoked_at: float
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., created_at: _Optional[float] = ..., revoked_at: _Optional[float] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("name", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    updated_at: float
    def __init__(self, name: _Optional[str] = ..., updated_at: _Optional[float] = ...) -> None: ...

class SetSecretRequest(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[Secret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[Secret, _Mapping]]] = ...) -> None: ...

class DeleteSecretRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("model", "deployment_id", "compute_cluster_id", "nodepool_id", "user_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODEPOOL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    deployment_id: str
    compute_cluster_id: str
    nodepool_id: str
    user_id: str
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., deployment_id: _Optional[str] = ..., compute_cluster_id: _Optional[str] = ..., nodepool_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("address", "token", "expires_at", "deployment_id", "version_id", "description", "addresses", "refresh_at", "retry_after", "reason", "user_id", "ipc_addresses")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    REFRESH_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    IPC_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    address: str
    token: str
    expires_at: float
    deployment_id: str
    version_id: str
    description: _runner_pb2.ModelDescription
    addresses: _containers.RepeatedScalarFieldContainer[str]
    refresh_at: float
    retry_after: float
    reason: str
    user_id: str
    ipc_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, address: _Optional[str] = ..., token: _Optional[str] = ..., expires_at: _Optional[float] = ..., deployment_id: _Optional[str] = ..., version_id: _Optional[str] = ..., description: _Optional[_Union[_runner_pb2.ModelDescription, _Mapping]] = ..., addresses: _Optional[_Iterable[str]] = ..., refresh_at: _Optional[float] = ..., retry_after: _Optional[float] = ..., reason: _Optional[str] = ..., user_id: _Optional[str] = ..., ipc_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("kinds", "ids", "user_id")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    ids: _containers.RepeatedScalarFieldContainer[str]
    user_id: str
    def __init__(self, kinds: _Optional[_Iterable[str]] = ..., ids: _Optional[_Iterable[str]] = ..., user_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "kind", "id", "user_id", "deployment_id", "state", "reason", "version_id", "addresses", "time", "initial")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    id: str
    user_id: str
    deployment_id: str
    state: str
    reason: str
    version_id: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    time: float
    initial: bool
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., id: _Optional[str] = ..., user_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., version_id: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., time: _Optional[float] = ..., initial: bool = ...) -> None: ...

class CallLogsRequest(_message.Message):
    __slots__ = ("ref", "since", "limit", "inference")
    REF_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    since: float
    limit: int
    inference: bool
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., since: _Optional[float] = ..., limit: _Optional[int] = ..., inference: bool = ...) -> None: ...

class CallRecord(_message.Message):
    __slots__ = ("timestamp", "request_id", "caller", "method", "status", "latency_ms", "bytes_in", "bytes_out", "inputs_json", "outputs_json", "replica_id", "version_id")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    timestamp: float
    request_id: str
    caller: str
    method: str
    status: str
    latency_ms: float
    bytes_in: int
    bytes_out: int
    inputs_json: str
    outputs_json: str
    replica_id: str
    version_id: str
    def __init__(self, timestamp: _Optional[float] = ..., request_id: _Optional[str] = ..., caller: _Optional[str] = ..., method: _Optional[str] = ..., status: _Optional[str] = ..., latency_ms: _Optional[float] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., inputs_json: _Optional[str] = ..., outputs_json: _Optional[str] = ..., replica_id: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class CallLogsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[CallRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[CallRecord, _Mapping]]] = ...) -> None: ...

class MetricsResponse(_message.Message):
    __slots__ = ("metrics_json",)
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    metrics_json: str
    def __init__(self, metrics_json: _Optional[str] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
