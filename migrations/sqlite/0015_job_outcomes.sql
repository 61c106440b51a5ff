-- Job outcomes (issue 18; SPEC.md, "Job outcomes"). Same number as migrations/postgres/0015.
-- An attempt may now end `snoozed` (the job asked to run later; the attempt is not spent) or
-- `cancelled` (the job cancelled itself, or an operator did), and a delivery may end
-- `cancelled` (the job, an operator or a purge ended it; final, like `acked`).
--
-- SQLite cannot alter a CHECK: both tables are rebuilt (SQLite's documented "12-step"
-- procedure: create the new shape, copy, drop the old, rename). Notes:
-- - sqlx runs this file in one transaction, so a failure leaves the old tables as they were.
-- - No foreign key names these tables, so PRAGMA foreign_keys (which cannot change inside a
--   transaction anyway) does not matter.
-- - The fan-out trigger on `messages` inserts into `deliveries`: it is dropped first and
--   created again, unchanged, at the end. A RENAME (with legacy_alter_table off, the
--   default) checks every trigger of the schema, and this one would name a table that for
--   a moment does not exist.
-- - Columns keep their order and their names (0010 and 0014 added lease_holder and attempts
--   at the end); every index is created again as it was (0007, 0009).
-- - job_executions ids are AUTOINCREMENT: the new table's sequence is set to the old one's,
--   so an id pruned by retention is never handed out again.

DROP TRIGGER messages_fan_out;

-- deliveries: state admits 'cancelled'.
CREATE TABLE deliveries_new (
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    -- pending (due at visible_at), leased (lease ends at visible_at), acked, dead, cancelled.
    state          TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'acked', 'dead', 'cancelled')),
    visible_at     INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lease_token    TEXT,
    -- 1 when the message has an idempotency key.
    keyed          INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    lease_holder   TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, consumer_group)
) WITHOUT ROWID;
INSERT INTO deliveries_new
    (message_id, consumer_group, topic, state, visible_at, delivery_count, lease_token, keyed, updated_at,
     lease_holder, attempts)
SELECT message_id, consumer_group, topic, state, visible_at, delivery_count, lease_token, keyed, updated_at,
       lease_holder, attempts
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (consumer_group, visible_at, state) WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_leased ON deliveries (visible_at) WHERE state = 'leased';

-- job_executions: status admits 'snoozed' and 'cancelled'.
CREATE TABLE job_executions_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    topic          TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed', 'snoozed', 'cancelled')),
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    duration_ms    INTEGER,
    error          TEXT
);
INSERT INTO job_executions_new
    (id, topic, message_id, consumer_group, attempt, status, started_at, finished_at, duration_ms, error)
SELECT id, topic, message_id, consumer_group, attempt, status, started_at, finished_at, duration_ms, error
FROM job_executions;
-- The copy set the new sequence to the highest id still stored; the old one may be higher.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'job_executions_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'job_executions_new');
UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'job_executions'), 0))
WHERE name = 'job_executions_new';
DROP TABLE job_executions;
ALTER TABLE job_executions_new RENAME TO job_executions;
CREATE INDEX job_executions_message ON job_executions (message_id, consumer_group);
CREATE INDEX job_executions_started ON job_executions (started_at);

-- The fan-out trigger of 0001, unchanged.
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
