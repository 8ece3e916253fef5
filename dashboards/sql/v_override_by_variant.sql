-- v_override_by_variant: overrides per day and per model / prompt variant, the
-- figures an A/B rollout of a model or a prompt is judged on.
--
-- Each decided review counts for the model call v_attributed_reviews attributes it
-- to (the task's latest model call at or before the review; see that view for the
-- whole rule); a review of a task without a model call counts with model,
-- model_version, prompt_template_id and prompt_version all '', so that the totals
-- still match v_override_daily. `day` is the UTC day of the review, not of the
-- model call. Create v_attributed_reviews first (the files sort in that order).
--
-- Reading it: one row per (day, model, model_version, prompt_template_id,
-- prompt_version). Sum decided and overrides over any period and any of the key
-- columns: override rate by model = sum(overrides) / sum(decided) GROUP BY model,
-- model_version; by prompt = ... GROUP BY prompt_template_id, prompt_version.
CREATE OR REPLACE VIEW aitrail.v_override_by_variant AS
SELECT
    day,
    model,
    model_version,
    prompt_template_id,
    prompt_version,
    count() AS decided,
    countIf(decision IN ('reject', 'modify')) AS overrides,
    countIf(decision = 'approve') AS approve,
    countIf(decision = 'reject') AS reject,
    countIf(decision = 'modify') AS modify,
    overrides / decided AS override_rate
FROM aitrail.v_attributed_reviews
GROUP BY day, model, model_version, prompt_template_id, prompt_version;
