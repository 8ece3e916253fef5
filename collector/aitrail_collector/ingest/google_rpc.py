"""``google.rpc.Status`` and ``google.rpc.RetryInfo``, the two messages OTLP answers
carry (an OTLP/HTTP error body; the retry delay of an overloaded OTLP/gRPC call).

They are declared here, in a descriptor pool of their own, rather than taken from
googleapis-common-protos: the collector needs two small messages, not that package,
and a private pool cannot clash with it when an application has it loaded too. The
wire format and the JSON mapping are those of the real messages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2
from google.protobuf.message_factory import GetMessageClass

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    for dep in (duration_pb2, any_pb2):
        pool.AddSerializedFile(dep.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="aitrail_collector/google_rpc.proto", package="google.rpc", syntax="proto3",
        dependency=["google/protobuf/duration.proto", "google/protobuf/any.proto"])
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    status.field.add(name="details", number=3, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                     type_name=".google.protobuf.Any")
    retry = file.message_type.add(name="RetryInfo")
    retry.field.add(name="retry_delay", number=1, type=_F.TYPE_MESSAGE,
                    label=_F.LABEL_OPTIONAL, type_name=".google.protobuf.Duration")
    pool.Add(file)
    return (GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
            GetMessageClass(pool.FindMessageTypeByName("google.rpc.RetryInfo")))


Status, RetryInfo = _build()


def retry_info(retry_ms: int) -> bytes:
    """A serialized RetryInfo asking the client to wait ``retry_ms`` milliseconds."""
    info = RetryInfo()
    info.retry_delay.seconds, info.retry_delay.nanos = divmod(retry_ms, 1000)
    info.retry_delay.nanos *= 1_000_000
    return bytes(info.SerializeToString())
