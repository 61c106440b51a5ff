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
    -- created_at + the send's delay.
    deliver_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    -- Set by a dead-letter replay: deliver to this consumer group only.
    only_group      TEXT
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
CREATE INDEX subscriptions_topic ON subscriptions (topic_pattern);

-- state: pending (due at visible_at), leased (lease ends at visible_at), acked, dead.
CREATE TABLE deliveries (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'acked', 'dead')),
    visible_at     INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lease_token    TEXT,
    -- 1 when the message has an idempotency key to release once every delivery finished.
    keyed          INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
) WITHOUT ROWID;
-- The claim query: due work of one group, oldest first. Finished rows leave the index.
CREATE INDEX deliveries_due ON deliveries (consumer_group, visible_at) WHERE state IN ('pending', 'leased');
-- No (topic, state) index: only the admin counts would use it, and every state change on
-- the hot path would pay for it.

-- Fan-out at insert time, inside the sending statement: one delivery per subscribed group,
-- due at max(send delay, the group's initial delay). A send is then a single statement.
CREATE TRIGGER messages_fan_out AFTER INSERT ON messages
BEGIN
    INSERT OR IGNORE INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at)
    SELECT NEW.id, s.consumer_group, NEW.topic, 'pending', MAX(NEW.deliver_at, NEW.created_at + s.initial_delay_us), 0,
           NEW.idempotency_key IS NOT NULL, NEW.created_at
    FROM subscriptions s
    WHERE NEW.only_group IS NULL
      AND (s.topic_pattern = NEW.topic OR (s.is_prefix = 1 AND substr(NEW.topic, 1, length(s.prefix)) = s.prefix));
    INSERT OR IGNORE INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at)
    SELECT NEW.id, NEW.only_group, NEW.topic, 'pending', NEW.deliver_at, 0, NEW.idempotency_key IS NOT NULL, NEW.created_at
    WHERE NEW.only_group IS NOT NULL;
END;

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
-- Serves "running rows" (rescue) and "failed per topic" (counts) alike.
CREATE INDEX job_executions_status ON job_executions (status, topic);
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
