-- Same number as migrations/sqlite/0026. Group concurrency for pushes this database did not
-- lease (Vercel's): one row per push of a message group that holds one of the group's
-- slots, keyed by its message id, until it settles or, for a function killed before it
-- could release it, until `expires_at`. An acquire takes the group's `flow_groups` row lock
-- (creating the row if needed), then counts the group's unexpired slots and removes its
-- expired ones, so two functions never both take the last slot.
CREATE TABLE flow_group_slots (
    consumer_group TEXT COLLATE "C" NOT NULL,
    group_key      TEXT COLLATE "C" NOT NULL,
    message_id     TEXT COLLATE "C" NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer_group, group_key, message_id)
);
