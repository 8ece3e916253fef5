-- v_escalations_daily: escalations per UTC day, split by how their task ended.
--
-- Every escalation record counts once (a task escalated twice counts twice), on
-- the day it was escalated. resolution_outcome is the outcome of the task's
-- latest resolution record (by start_time, then record_id), whenever it was
-- written; 'unresolved' when the task has no resolution yet (or the escalation
-- has no task_id). So the split of past days changes as tasks get resolved.
--
-- Reading it: sum `escalations` over any period, grouped by resolution_outcome
-- or not. Resolution outcomes are the application's own words
-- (e.g. reply_sent, handled_manually).
CREATE OR REPLACE VIEW aitrail.v_escalations_daily AS
SELECT
    toDate(e.start_time) AS day,
    if(res.last_outcome = '', 'unresolved', res.last_outcome) AS resolution_outcome,
    count() AS escalations
FROM aitrail.envelopes AS e
LEFT JOIN
(
    SELECT task_id, argMax(resolution_outcome, tuple(start_time, record_id)) AS last_outcome
    FROM aitrail.envelopes
    WHERE event_type = 'resolution' AND task_id != ''
    GROUP BY task_id
) AS res ON res.task_id = e.task_id
WHERE e.event_type = 'escalation'
GROUP BY day, resolution_outcome
-- An unmatched escalation must see '' rather than NULL, whatever the server profile says.
SETTINGS join_use_nulls = 0;
