-- The queue: messages per topic, one delivery row per (message, consumer group), the
-- execution log, dead letters and checkpoints. Times are microseconds since the Unix epoch
-- (UTC) so that comparisons are integer comparisons on an index.

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    topic           TEXT NOT NULL,
    payload         BLOB NOT NULL,
    content_type    TEXT NOT NULL,
    headers_json    TEXT,
    -- Cleared when every delivery of the message has finished, so the key can be used again.
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
-- Dedup: one live message per (topic, key).
CREATE UNIQUE INDEX messages_idempotency ON messages (topic, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_expires ON messages (expires_at);

-- Consumer groups subscribed to a topic (or to a 'prefix*' pattern).
CREATE TABLE subscriptions (
    consumer_group   TEXT NOT NULL,
    topic_pattern    TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    is_prefix        INTEGER NOT NULL,
    initial_delay_us INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic_pattern)
);

-- state: pending (due at visible_at), leased (lease ends at visible_at), acked, dead.
CREATE TABLE deliveries (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'acked', 'dead')),
    visible_at     INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lease_token    TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
) WITHOUT ROWID;
-- The claim query: due work of one group, oldest first. Finished rows leave the index.
CREATE INDEX deliveries_due ON deliveries (consumer_group, visible_at) WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_topic ON deliveries (topic, state);

CREATE TABLE job_executions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    topic          TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    duration_ms    INTEGER,
    error          TEXT
);
CREATE INDEX job_executions_message ON job_executions (message_id, consumer_group);
CREATE INDEX job_executions_running ON job_executions (status) WHERE status = 'running';
CREATE INDEX job_executions_topic ON job_executions (topic, status);
CREATE INDEX job_executions_started ON job_executions (started_at);

CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id     TEXT NOT NULL,
    topic          TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    payload        BLOB NOT NULL,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX dead_letters_created ON dead_letters (created_at);

CREATE TABLE checkpoints (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    value          TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
) WITHOUT ROWID;
