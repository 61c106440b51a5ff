-- Same number as migrations/postgres/0023. The dashboard's charts (finished, failed, latency
-- percentiles and queue depth per topic and minute) read this small rollup rather than scan
-- job_executions: one row per topic and minute, kept 7 days. A rollup pass reads the
-- executions after its cursor by primary key (no index is added to job_executions or
-- deliveries, nothing is written at settlement) and remembers by id those still running.
CREATE TABLE stats_minutes (
    topic    TEXT NOT NULL,
    -- The minute's start, microseconds since the epoch (as every time in this database).
    minute   INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    failed   INTEGER NOT NULL DEFAULT 0,
    -- Attempts per latency bucket (vqs::stats::LATENCY_BUCKETS_MS), comma-separated.
    latency  TEXT NOT NULL DEFAULT '',
    max_ms   INTEGER NOT NULL DEFAULT 0,
    -- Messages waiting (due, not leased) when the minute was sampled.
    depth    INTEGER,
    PRIMARY KEY (topic, minute)
) WITHOUT ROWID;
-- The charts of every topic read a window of minutes; pruning deletes by minute too.
CREATE INDEX stats_minutes_minute ON stats_minutes (minute);

-- The rollup's cursor: executions up to this id were read; `pending` holds (a JSON array)
-- the ids of those that were still running.
CREATE TABLE stats_rollup_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    rolled_through_id INTEGER NOT NULL,
    pending     TEXT NOT NULL DEFAULT '[]'
);
-- Charts start from now: the history already kept is not read again.
INSERT INTO stats_rollup_state (id, rolled_through_id) SELECT 1, coalesce(max(id), 0) FROM job_executions;
