-- v_override_daily: how often reviewers overrode the model, per day.
--
-- One row per UTC day (of the review's start_time) that has at least one review.
-- An override is a review that did not accept the model's output as it was:
-- decision 'reject' or 'modify'. Reviews with decision 'none' (the reviewer left
-- without deciding) are counted in `undecided` only; they are neither decided
-- nor overrides. This is the definition `aitrail summary` uses:
--
--     override_rate = (reject + modify) / (approve + reject + modify)
--
-- Reading it: pick a period with `WHERE day BETWEEN '2026-11-01' AND '2026-11-30'`.
-- The counts add up across days, so the rate of a period is exact as
-- sum(overrides) / sum(decided); never average the daily override_rate values
-- (a quiet day would weigh as much as a busy one). override_rate is NULL on a
-- day with reviews but no decided review.
CREATE OR REPLACE VIEW aitrail.v_override_daily AS
SELECT
    toDate(start_time) AS day,
    countIf(decision IN ('approve', 'reject', 'modify')) AS decided,
    countIf(decision IN ('reject', 'modify')) AS overrides,
    countIf(decision = 'approve') AS approve,
    countIf(decision = 'reject') AS reject,
    countIf(decision = 'modify') AS modify,
    countIf(decision = 'none') AS undecided,
    if(decided = 0, NULL, overrides / decided) AS override_rate
FROM aitrail.envelopes
WHERE event_type = 'review'
GROUP BY day;
