-- v_attributed_reviews: each decided review with the model call it is attributed to.
--
-- A review record carries no model columns, so each decided review (approve,
-- reject, modify; 'none' is left out) is attributed to one model call of the
-- same task_id, chosen deterministically:
--   1. the task's latest model call that started at or before the review
--      (a retry or a regeneration after the review does not take the review over);
--   2. if every model call of the task started after the review (clocks of two
--      services disagree), the task's earliest model call;
--   3. equal start times are broken by the larger record_id (UUIDv7: the later one);
--   4. a review whose task has no model call, or that has no task_id, is kept with
--      model, model_version, prompt_template_id and prompt_version all '' so that
--      the totals still match v_override_daily.
-- `day` is the UTC day of the review, not of the model call.
--
-- Reading it: one row per decided review (chain_id, record_id). v_override_by_variant
-- counts these rows; the console's search finds the reviews behind a bar of its
-- override charts here.
CREATE OR REPLACE VIEW aitrail.v_attributed_reviews AS
SELECT
    chain_id,
    record_id,
    start_time,
    toDate(start_time) AS day,
    decision,
    tupleElement(variant, 1) AS model,
    tupleElement(variant, 2) AS model_version,
    tupleElement(variant, 3) AS prompt_template_id,
    tupleElement(variant, 4) AS prompt_version
FROM
(
    -- The key orders the task's model calls by the rule above: calls at or before
    -- the review first, latest of those; else earliest after.
    SELECT
        r.chain_id AS chain_id,
        r.record_id AS record_id,
        r.start_time AS start_time,
        r.decision AS decision,
        argMax(
            tuple(m.model, m.model_version, m.prompt_template_id, m.prompt_version),
            tuple(m.start_time <= r.start_time,
                  if(m.start_time <= r.start_time, 1, -1) * toUnixTimestamp64Nano(m.start_time),
                  m.record_id)) AS variant
    FROM aitrail.envelopes AS r
    LEFT JOIN
    (
        SELECT task_id, record_id, start_time, model, model_version,
               prompt_template_id, prompt_version
        FROM aitrail.envelopes
        WHERE event_type = 'model_call' AND task_id != ''
    ) AS m ON m.task_id = r.task_id
    WHERE r.event_type = 'review' AND r.decision IN ('approve', 'reject', 'modify')
    GROUP BY r.chain_id, r.record_id, r.start_time, r.decision
    -- An unmatched review must see '' and epoch defaults, not NULLs, whatever
    -- the server profile says.
    SETTINGS join_use_nulls = 0
);
