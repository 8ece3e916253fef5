-- v_reviewer_latency_daily: review-time percentiles per reviewer and UTC day, for
-- charts that plot one point per day (the Grafana dashboard).
--
-- Same reviews as v_review_times (decided reviews only). p50/p90/p99 use
-- quantileExact: the value at 0-based position floor(q * n) of the day's n sorted
-- times, no interpolation.
--
-- Reading it: `reviews` and `total_ms` add up across days (mean over a period =
-- sum(total_ms) / sum(reviews)); the percentiles do not: for percentiles over a
-- period, compute them from v_review_times instead of combining these rows.
CREATE OR REPLACE VIEW aitrail.v_reviewer_latency_daily AS
SELECT
    toDate(start_time) AS day,
    reviewer_id,
    count() AS reviews,
    quantileExact(0.5)(time_spent_ms) AS p50_ms,
    quantileExact(0.9)(time_spent_ms) AS p90_ms,
    quantileExact(0.99)(time_spent_ms) AS p99_ms,
    sum(time_spent_ms) AS total_ms
FROM aitrail.envelopes
WHERE event_type = 'review' AND decision IN ('approve', 'reject', 'modify')
GROUP BY day, reviewer_id;
