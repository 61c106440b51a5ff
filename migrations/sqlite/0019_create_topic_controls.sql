-- Same number as migrations/postgres/0019. Operator controls of a topic, one row per topic
-- that has any (SPEC.md, "Flow control"): `paused` holds back every new start of the topic's
-- messages (publishing still works; running jobs finish). Limit overrides per topic will
-- live beside it in this row. The claim skips the paused topics (a subquery evaluated once
-- per statement); dispatchers that know their topic is paused do not claim at all.
CREATE TABLE topic_controls (
    topic      TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
