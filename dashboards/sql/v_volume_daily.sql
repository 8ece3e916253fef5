-- v_volume_daily: how many records were sealed per UTC day and event type
-- (model_call, review, escalation, resolution, data_access, task_created,
-- redaction, and any custom type an application sends).
--
-- `day` is the day of the record's start_time (when the event happened, by the
-- emitting service's clock), not of its arrival at the collector.
--
-- Reading it: sum `records` over any period, per event_type or in total.
CREATE OR REPLACE VIEW aitrail.v_volume_daily AS
SELECT
    toDate(start_time) AS day,
    event_type,
    count() AS records
FROM aitrail.envelopes
GROUP BY day, event_type;
