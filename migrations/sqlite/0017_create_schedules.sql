-- Same number as migrations/postgres/0017. Runtime schedules (SPEC.md, "Runtime schedules"):
-- a schedule is a row, not a deploy. `next_fire_at` is the tick it fires next, computed by
-- the application in the schedule's time zone; the due query reads the partial index on it,
-- so thousands of schedules cost what the due ones cost. A fire moves `next_fire_at` by
-- compare-and-set (on `next_fire_at` and `updated_at`) and records itself in
-- `schedule_fires`, unique per (name, tick), in the transaction that publishes its message:
-- a tick fires once however many processes race. Fire records outlive their schedule.
-- Times are microseconds since the Unix epoch, as elsewhere in this schema.
CREATE TABLE schedules (
    name            TEXT PRIMARY KEY,
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    topic           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    next_fire_at    INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_tick       INTEGER,
    last_fired_at   INTEGER,
    last_message_id TEXT
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled = 1 AND next_fire_at IS NOT NULL;
CREATE TABLE schedule_fires (
    name       TEXT NOT NULL,
    tick       INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    fired_at   INTEGER NOT NULL,
    message_id TEXT,
    PRIMARY KEY (name, tick)
);
