-- Same number as migrations/sqlite/0018. Runtime schedules gain `catch_up` (after downtime,
-- fire the one missed tick, or skip missed ticks) and `jitter_seconds` (a fire happens up
-- to that long after its tick, by a fixed offset per (name, tick), so schedules sharing a
-- tick are spread). `next_fire_at` stays the tick (the idempotency key and the
-- compare-and-set name it); `due_at` is when it fires (tick + offset) and is what the due
-- query reads through the index.
ALTER TABLE schedules
    ADD COLUMN catch_up BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN jitter_seconds INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN due_at TIMESTAMPTZ;
UPDATE schedules SET due_at = next_fire_at;
DROP INDEX schedules_due;
CREATE INDEX schedules_due ON schedules (due_at) WHERE enabled AND due_at IS NOT NULL;
-- A fire recorded but not yet published (a queue that publishes to a remote service claims
-- the tick here, then publishes): found by this small index and published again until it
-- is, under the tick's idempotency key. Missed ticks (`catch_up` off) publish nothing.
CREATE INDEX schedule_fires_unsent ON schedule_fires (fired_at) WHERE message_id IS NULL AND kind <> 'missed';
