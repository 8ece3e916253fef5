from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenLogprob(_message.Message):
    __slots__ = ("token", "logprob")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    token: str
    logprob: float
    def __init__(self, token: _Optional[str] = ..., logprob: _Optional[float] = ...) -> None: ...

class TokenUsage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class ModelCall(_message.Message):
    __slots__ = ("provider", "model", "model_version", "prompt_template_id", "prompt_version", "parameters", "input", "output", "confidence", "logprobs", "usage", "streamed", "response_id")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    model_version: str
    prompt_template_id: str
    prompt_version: str
    parameters: _containers.ScalarMap[str, str]
    input: str
    output: str
    confidence: float
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    usage: TokenUsage
    streamed: bool
    response_id: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., prompt_template_id: _Optional[str] = ..., prompt_version: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., confidence: _Optional[float] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., streamed: _Optional[bool] = ..., response_id: _Optional[str] = ...) -> None: ...

class Rationale(_message.Message):
    __slots__ = ("reason_code", "policy_ref", "text")
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    POLICY_REF_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    reason_code: str
    policy_ref: str
    text: str
    def __init__(self, reason_code: _Optional[str] = ..., policy_ref: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("reviewer_id", "decision", "modified_output", "diff", "time_spent_ms", "rationale")
    REVIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    TIME_SPENT_MS_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    reviewer_id: str
    decision: str
    modified_output: str
    diff: str
    time_spent_ms: int
    rationale: Rationale
    def __init__(self, reviewer_id: _Optional[str] = ..., decision: _Optional[str] = ..., modified_output: _Optional[str] = ..., diff: _Optional[str] = ..., time_spent_ms: _Optional[int] = ..., rationale: _Optional[_Union[Rationale, _Mapping]] = ...) -> None: ...

class Escalation(_message.Message):
    __slots__ = ("from_reviewer", "to_reviewer", "reason")
    FROM_REVIEWER_FIELD_NUMBER: _ClassVar[int]
    TO_REVIEWER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_reviewer: str
    to_reviewer: str
    reason: str
    def __init__(self, from_reviewer: _Optional[str] = ..., to_reviewer: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Resolution(_message.Message):
    __slots__ = ("outcome", "final_decision")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FINAL_DECISION_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    final_decision: str
    def __init__(self, outcome: _Optional[str] = ..., final_decision: _Optional[str] = ...) -> None: ...

class DataAccess(_message.Message):
    __slots__ = ("actor", "resource", "purpose")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    actor: str
    resource: str
    purpose: str
    def __init__(self, actor: _Optional[str] = ..., resource: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("name", "score_value", "score_label", "explanation", "response_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORE_LABEL_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    score_value: float
    score_label: str
    explanation: str
    response_id: str
    def __init__(self, name: _Optional[str] = ..., score_value: _Optional[float] = ..., score_label: _Optional[str] = ..., explanation: _Optional[str] = ..., response_id: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("type", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("record_id", "event_type", "task_id", "request_id", "trace_id", "span_id", "parent_span_id", "start_time_unix_nano", "end_time_unix_nano", "service", "service_version", "environment", "host", "sdk_version", "model_call", "review", "escalation", "resolution", "data_access", "error", "evaluation", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALL_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    DATA_ACCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    event_type: str
    task_id: str
    request_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    service: str
    service_version: str
    environment: str
    host: str
    sdk_version: str
    model_call: ModelCall
    review: Review
    escalation: Escalation
    resolution: Resolution
    data_access: DataAccess
    error: Error
    evaluation: Evaluation
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, record_id: _Optional[str] = ..., event_type: _Optional[str] = ..., task_id: _Optional[str] = ..., request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., parent_span_id: _Optional[str] = ..., start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., service: _Optional[str] = ..., service_version: _Optional[str] = ..., environment: _Optional[str] = ..., host: _Optional[str] = ..., sdk_version: _Optional[str] = ..., model_call: _Optional[_Union[ModelCall, _Mapping]] = ..., review: _Optional[_Union[Review, _Mapping]] = ..., escalation: _Optional[_Union[Escalation, _Mapping]] = ..., resolution: _Optional[_Union[Resolution, _Mapping]] = ..., data_access: _Optional[_Union[DataAccess, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("index", "record_id", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    record_id: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., record_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "chain_id", "head_seq")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[Rejection]
    chain_id: str
    head_seq: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ..., chain_id: _Optional[str] = ..., head_seq: _Optional[int] = ...) -> None: ...
