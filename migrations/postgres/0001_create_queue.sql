-- The queue: messages per topic, one delivery row per (message, consumer group), the
-- execution log, dead letters and checkpoints. The same shape as migrations/sqlite/0001.

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    topic           TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    content_type    TEXT NOT NULL,
    headers_json    TEXT,
    -- Cleared when every delivery of the message has finished, so the key can be used again.
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    deliver_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    -- Set by a dead-letter replay: deliver to this consumer group only.
    only_group      TEXT
);
-- Dedup: one live message per (topic, key).
CREATE UNIQUE INDEX messages_idempotency ON messages (topic, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_expires ON messages (expires_at);

CREATE TABLE subscriptions (
    consumer_group  TEXT NOT NULL,
    topic_pattern   TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    is_prefix       BOOLEAN NOT NULL,
    initial_delay_s INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer_group, topic_pattern)
);
CREATE INDEX subscriptions_topic ON subscriptions (topic_pattern);

-- state: pending (due at visible_at), leased (lease ends at visible_at), acked, dead.
CREATE TABLE deliveries (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'acked', 'dead')),
    visible_at     TIMESTAMPTZ NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lease_token    TEXT,
    keyed          BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
);
-- The claim query: due work of one group, oldest first. Finished rows leave the index.
CREATE INDEX deliveries_due ON deliveries (consumer_group, visible_at) WHERE state IN ('pending', 'leased');

-- Fan-out at insert time: one delivery per subscribed group, due at max(delay, initial delay).
CREATE FUNCTION vqs_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.only_group IS NOT NULL THEN
        INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at)
        VALUES (NEW.id, NEW.only_group, NEW.topic, 'pending', NEW.deliver_at, 0, NEW.idempotency_key IS NOT NULL, NEW.created_at)
        ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at)
        SELECT NEW.id, s.consumer_group, NEW.topic, 'pending',
               GREATEST(NEW.deliver_at, NEW.created_at + make_interval(secs => s.initial_delay_s)), 0,
               NEW.idempotency_key IS NOT NULL, NEW.created_at
        FROM subscriptions s
        WHERE s.topic_pattern = NEW.topic OR (s.is_prefix AND starts_with(NEW.topic, s.prefix))
        ON CONFLICT DO NOTHING;
    END IF;
    -- Every process listening wakes at once (LISTEN vqs_published).
    PERFORM pg_notify('vqs_published', NEW.topic);
    RETURN NULL;
END $$;
CREATE TRIGGER messages_fan_out AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION vqs_fan_out();

CREATE TABLE job_executions (
    id             BIGSERIAL PRIMARY KEY,
    topic          TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ,
    duration_ms    BIGINT,
    error          TEXT
);
CREATE INDEX job_executions_message ON job_executions (message_id, consumer_group);
CREATE INDEX job_executions_status ON job_executions (status, topic);
CREATE INDEX job_executions_started ON job_executions (started_at);

CREATE TABLE dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    message_id     TEXT NOT NULL,
    topic          TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    payload        BYTEA NOT NULL,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX dead_letters_created ON dead_letters (created_at);

CREATE TABLE checkpoints (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    value          TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
);
