-- Same number as migrations/postgres/0026. Group concurrency for pushes this database did not
-- lease (Vercel's; SQLite's one writer serialises them): one row per push of a message group
-- that holds one of the group's slots, keyed by its message id, until it settles or, for a
-- function killed before it could release it, until `expires_at` (µs). An acquire counts
-- the group's unexpired slots and removes its expired ones.
CREATE TABLE flow_group_slots (
    consumer_group TEXT NOT NULL,
    group_key      TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, group_key, message_id)
) WITHOUT ROWID;
