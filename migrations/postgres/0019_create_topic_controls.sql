-- Same number as migrations/sqlite/0019. Operator controls of a topic, one row per topic that
-- has any (SPEC.md, "Flow control"): `paused` holds back every new start of the topic's
-- messages (publishing still works; running jobs finish). Limit overrides per topic will
-- live beside it in this row. The claim reads the paused topics once per statement (an
-- array computed first), so a paused topic's backlog is never leased; dispatchers that know
-- their topic is paused do not claim at all (their backlog is never scanned).
CREATE TABLE topic_controls (
    topic      TEXT PRIMARY KEY COLLATE "C",
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX topic_controls_paused ON topic_controls (topic) WHERE paused;
