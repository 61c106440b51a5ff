-- Same number as migrations/postgres/0020. Limits per topic (SPEC.md, "Flow control").
--
-- Runtime overrides of a topic's limits live in its `topic_controls` row beside `paused`
-- (NULL: no override; the job type's default, if any, is in force). A rate limit is a pair:
-- at most `*_rate_limit` starts per `*_rate_period_seconds`.
ALTER TABLE topic_controls ADD COLUMN concurrency INTEGER;
ALTER TABLE topic_controls ADD COLUMN rate_limit INTEGER;
ALTER TABLE topic_controls ADD COLUMN rate_period_seconds INTEGER;
ALTER TABLE topic_controls ADD COLUMN group_concurrency INTEGER;
ALTER TABLE topic_controls ADD COLUMN group_rate_limit INTEGER;
ALTER TABLE topic_controls ADD COLUMN group_rate_period_seconds INTEGER;

-- A rate limit's bucket: GCRA's "theoretical arrival time" (microseconds since the epoch)
-- per (consumer group, topic), advanced by `interval_us` (period / limit, rounded up to the
-- microsecond) for each start. A start is allowed while `tat_us <= now + (limit - 1) *
-- interval_us`: a burst of `limit`, then `limit` per period on average, never more. Only the
-- claim writes it, inside its write transaction (SQLite's one writer serialises claims).
CREATE TABLE rate_buckets (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    tat_us         INTEGER NOT NULL,
    interval_us    INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic)
) WITHOUT ROWID;
