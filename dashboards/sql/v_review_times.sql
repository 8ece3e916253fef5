-- v_review_times: one row per decided review with the time the reviewer spent on
-- it, for review-time percentiles per reviewer over any period.
--
-- time_spent_ms runs from opening the review to the decision (the SDK measures it,
-- or the review UI passes it). Reviews with decision 'none' (left without a
-- decision) have no time to decision and are not in this view.
--
-- Reading it: percentiles do not add up across days, so compute them over the
-- period you want from these rows, e.g.
--     SELECT reviewer_id, count() AS reviews,
--            quantileExact(0.5)(time_spent_ms) AS p50_ms,
--            quantileExact(0.9)(time_spent_ms) AS p90_ms
--     FROM aitrail.v_review_times
--     WHERE day BETWEEN '2026-11-01' AND '2026-11-30'
--     GROUP BY reviewer_id
-- quantileExact(q) is the value at 0-based position floor(q * n) of the n sorted
-- values (no interpolation; the upper median for an even n).
CREATE OR REPLACE VIEW aitrail.v_review_times AS
SELECT
    toDate(start_time) AS day,
    reviewer_id,
    decision,
    time_spent_ms
FROM aitrail.envelopes
WHERE event_type = 'review' AND decision IN ('approve', 'reject', 'modify');
