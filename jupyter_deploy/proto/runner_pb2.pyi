from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("none", "str", "bytes", "int", "float", "bool", "list", "map", "ndarray", "dataframe", "image", "concept", "region", "frame", "audio", "video", "fields", "big_int")
    NONE_FIELD_NUMBER: _ClassVar[int]
    STR_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FIELD_NUMBER: _ClassVar[int]
    BOOL_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    NDARRAY_FIELD_NUMBER: _ClassVar[int]
    DATAFRAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    BIG_INT_FIELD_NUMBER: _ClassVar[int]
    none: bool
    str: str
    bytes: bytes
    int: int
    float: float
    bool: bool
    list: ListValue
    map: MapValue
    ndarray: NDArray
    dataframe: DataFrame
    image: Image
    concept: Concept
    region: Region
    frame: Frame
    audio: Media
    video: Media
    fields: MapValue
    big_int: str
    def __init__(self, none: bool = ..., str: _Optional[str] = ..., bytes: _Optional[bytes] = ..., int: _Optional[int] = ..., float: _Optional[float] = ..., bool: bool = ..., list: _Optional[_Union[ListValue, _Mapping]] = ..., map: _Optional[_Union[MapValue, _Mapping]] = ..., ndarray: _Optional[_Union[NDArray, _Mapping]] = ..., dataframe: _Optional[_Union[DataFrame, _Mapping]] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., concept: _Optional[_Union[Concept, _Mapping]] = ..., region: _Optional[_Union[Region, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., audio: _Optional[_Union[Media, _Mapping]] = ..., video: _Optional[_Union[Media, _Mapping]] = ..., fields: _Optional[_Union[MapValue, _Mapping]] = ..., big_int: _Optional[str] = ...) -> None: ...

class ListValue(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class MapValue(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: Value
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class NDArray(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("format", "mode", "width", "height", "data", "palette_mode", "palette")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PALETTE_MODE_FIELD_NUMBER: _ClassVar[int]
    PALETTE_FIELD_NUMBER: _ClassVar[int]
    format: str
    mode: str
    width: int
    height: int
    data: bytes
    palette_mode: str
    palette: bytes
    def __init__(self, format: _Optional[str] = ..., mode: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ..., palette_mode: _Optional[str] = ..., palette: _Optional[bytes] = ...) -> None: ...

class Concept(_message.Message):
    __slots__ = ("id", "name", "value")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    value: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("box", "concepts")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    box: _containers.RepeatedScalarFieldContainer[float]
    concepts: _containers.RepeatedCompositeFieldContainer[Concept]
    def __init__(self, box: _Optional[_Iterable[float]] = ..., concepts: _Optional[_Iterable[_Union[Concept, _Mapping]]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("image", "time")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    image: Image
    time: float
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., time: _Optional[float] = ...) -> None: ...

class Media(_message.Message):
    __slots__ = ("data", "mime")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime: str
    def __init__(self, data: _Optional[bytes] = ..., mime: _Optional[str] = ...) -> None: ...

class DataFrame(_message.Message):
    __slots__ = ("columns", "index")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    index: Column
    def __init__(self, columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., index: _Optional[_Union[Column, _Mapping]] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "array", "strings", "datetimes", "categorical", "range")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    DATETIMES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    name: Value
    array: NDArray
    strings: Strings
    datetimes: Datetimes
    categorical: Categorical
    range: RangeIndex
    def __init__(self, name: _Optional[_Union[Value, _Mapping]] = ..., array: _Optional[_Union[NDArray, _Mapping]] = ..., strings: _Optional[_Union[Strings, _Mapping]] = ..., datetimes: _Optional[_Union[Datetimes, _Mapping]] = ..., categorical: _Optional[_Union[Categorical, _Mapping]] = ..., range: _Optional[_Union[RangeIndex, _Mapping]] = ...) -> None: ...

class Strings(_message.Message):
    __slots__ = ("values", "missing", "dtype")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[bool]
    dtype: str
    def __init__(self, values: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[bool]] = ..., dtype: _Optional[str] = ...) -> None: ...

class Datetimes(_message.Message):
    __slots__ = ("values", "unit", "tz")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    unit: str
    tz: str
    def __init__(self, values: _Optional[_Iterable[int]] = ..., unit: _Optional[str] = ..., tz: _Optional[str] = ...) -> None: ...

class Categorical(_message.Message):
    __slots__ = ("categories", "codes", "ordered")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    ORDERED_FIELD_NUMBER: _ClassVar[int]
    categories: Column
    codes: NDArray
    ordered: bool
    def __init__(self, categories: _Optional[_Union[Column, _Mapping]] = ..., codes: _Optional[_Union[NDArray, _Mapping]] = ..., ordered: bool = ...) -> None: ...

class RangeIndex(_message.Message):
    __slots__ = ("start", "stop", "step")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    step: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class Type(_message.Message):
    __slots__ = ("kind", "args", "name", "fields")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    args: _containers.RepeatedCompositeFieldContainer[Type]
    name: str
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    def __init__(self, kind: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Type, _Mapping]]] = ..., name: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: Type
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[Type, _Mapping]] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("name", "type", "has_default", "default", "keyword_only", "stream")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HAS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_ONLY_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: Type
    has_default: bool
    default: Value
    keyword_only: bool
    stream: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[Type, _Mapping]] = ..., has_default: bool = ..., default: _Optional[_Union[Value, _Mapping]] = ..., keyword_only: bool = ..., stream: bool = ...) -> None: ...

class MethodDescription(_message.Message):
    __slots__ = ("name", "shape", "parameters", "returns", "doc", "is_async", "openai")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    OPENAI_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: str
    parameters: _containers.RepeatedCompositeFieldContainer[Parameter]
    returns: Type
    doc: str
    is_async: bool
    openai: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., returns: _Optional[_Union[Type, _Mapping]] = ..., doc: _Optional[str] = ..., is_async: bool = ..., openai: _Optional[str] = ...) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("model_id", "class_name", "methods", "doc")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    class_name: str
    methods: _containers.RepeatedCompositeFieldContainer[MethodDescription]
    doc: str
    def __init__(self, model_id: _Optional[str] = ..., class_name: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[MethodDescription, _Mapping]]] = ..., doc: _Optional[str] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("method", "args", "request_id")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    method: str
    args: _containers.RepeatedCompositeFieldContainer[Entry]
    request_id: str
    def __init__(self, method: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: Value
    def __init__(self, output: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("start", "items")
    START_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    start: PredictRequest
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, start: _Optional[_Union[PredictRequest, _Mapping]] = ..., items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("items", "end", "error")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    end: End
    error: Error
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., end: _Optional[_Union[End, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class End(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "type", "message", "traceback")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    code: str
    type: str
    message: str
    traceback: str
    def __init__(self, code: _Optional[str] = ..., type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class PredictBatch(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[BatchedCall]
    def __init__(self, calls: _Optional[_Iterable[_Union[BatchedCall, _Mapping]]] = ...) -> None: ...

class BatchedCall(_message.Message):
    __slots__ = ("request", "token", "timeout")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    request: PredictRequest
    token: str
    timeout: float
    def __init__(self, request: _Optional[_Union[PredictRequest, _Mapping]] = ..., token: _Optional[str] = ..., timeout: _Optional[float] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[BatchedReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[BatchedReply, _Mapping]]] = ...) -> None: ...

class BatchedReply(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: PredictResponse
    error: Error
    def __init__(self, response: _Optional[_Union[PredictResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ("model_path", "version_id", "run_test")
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_TEST_FIELD_NUMBER: _ClassVar[int]
    model_path: str
    version_id: str
    run_test: bool
    def __init__(self, model_path: _Optional[str] = ..., version_id: _Optional[str] = ..., run_test: bool = ...) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("error", "changed")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    error: Error
    changed: str
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., changed: _Optional[str] = ...) -> None: ...
