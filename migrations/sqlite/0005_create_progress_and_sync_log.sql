-- Operating it: what a running job says about its progress, and the sync log of jobs that
-- sync many accounts incrementally (where each account's next run starts, its last success).
-- Times are microseconds since the Unix epoch, as in 0001.

-- The latest progress report of one delivery (replaced on every report); deleted with its
-- message by retention.
CREATE TABLE job_progress (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    done           INTEGER NOT NULL,
    total          INTEGER,
    note           TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
) WITHOUT ROWID;
CREATE INDEX job_progress_updated ON job_progress (updated_at);

-- One row per (job topic, key): the cursor the next run starts from, and how the last
-- attempt went. Application data: kept until the app deletes it.
CREATE TABLE sync_log (
    topic           TEXT NOT NULL,
    key             TEXT NOT NULL,
    cursor          TEXT,
    last_attempt_at INTEGER NOT NULL,
    last_success_at INTEGER,
    last_error      TEXT,
    items_synced    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, key)
) WITHOUT ROWID;
