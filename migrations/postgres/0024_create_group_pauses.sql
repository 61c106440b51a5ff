-- Same number as migrations/sqlite/0024. A paused message group of a topic (SPEC.md, "Flow
-- control": `.../pause?group=G`): while a row exists, the claim leases none of the topic's
-- deliveries whose message carries that group key (publishing still works; running jobs
-- finish). The claim reads this table in the same statement, so a pause holds on every
-- process at once; with no row at all the filter is one init plan per claim. A grouped
-- consumer group parks a paused group out of its ready set (its backlog is not read);
-- a resume removes the row and wakes the group.
CREATE TABLE group_pauses (
    topic     TEXT COLLATE "C" NOT NULL,
    group_key TEXT COLLATE "C" NOT NULL,
    paused_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, group_key)
);
