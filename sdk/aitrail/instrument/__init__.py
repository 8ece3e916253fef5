"""The caller's side of the SDK: what application code calls.

Every function here captures what it must at call time -- the clock, the task
and request, the OpenTelemetry context, the input as text -- into a small draft
and hands it to the background worker; nothing on the caller's path does
network or disk I/O. The worker turns each draft into the dict that
:func:`aitrail.record.build.build_record` reads (``to_dict``): it formats the
span ids, makes the UUIDv7 of a model call or review from the start time
captured on the caller's thread, and redacts, all off the caller's path. Calls
that return a record id (escalate, resolve, evaluate, data_access, event) make it
on the caller's thread.
"""

from aitrail.instrument.context import task
from aitrail.instrument.events import data_access, escalate, evaluate, event, resolve
from aitrail.instrument.model_call import ModelCallRecord, current_call, model_call
from aitrail.instrument.review import Rationale, review
from aitrail.instrument.setup import configure, flush, shutdown, stats

__all__ = ["ModelCallRecord", "Rationale", "configure", "current_call", "data_access",
           "escalate", "evaluate", "event", "flush", "model_call", "resolve", "review",
           "shutdown", "stats", "task"]
