-- Same number as migrations/sqlite/0017. Runtime schedules (SPEC.md, "Runtime schedules"):
-- a schedule is a row, not a deploy. `next_fire_at` is the tick it fires next, computed by
-- the application in the schedule's time zone; the due query reads the partial index on it,
-- so thousands of schedules cost what the due ones cost. A fire moves `next_fire_at` by
-- compare-and-set (on `next_fire_at` and `updated_at`) and records itself in
-- `schedule_fires`, unique per (name, tick), in the transaction that publishes its message:
-- a tick fires once however many processes race. Fire records outlive their schedule.
-- Names compare byte by byte (COLLATE "C"), as the queue's other keys (0008).
CREATE TABLE schedules (
    name            TEXT COLLATE "C" PRIMARY KEY,
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    topic           TEXT COLLATE "C" NOT NULL,
    payload         TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    next_fire_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_tick       TIMESTAMPTZ,
    last_fired_at   TIMESTAMPTZ,
    last_message_id TEXT COLLATE "C"
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled AND next_fire_at IS NOT NULL;
CREATE TABLE schedule_fires (
    name       TEXT COLLATE "C" NOT NULL,
    tick       TIMESTAMPTZ NOT NULL,
    kind       TEXT NOT NULL,
    fired_at   TIMESTAMPTZ NOT NULL,
    message_id TEXT COLLATE "C",
    PRIMARY KEY (name, tick)
);
