-- Same number as migrations/postgres/0024. A paused message group of a topic (SPEC.md, "Flow
-- control": `.../pause?group=G`): while a row exists, the claim leases none of the topic's
-- deliveries whose message carries that group key (publishing still works; running jobs
-- finish). A grouped consumer group parks a paused group out of its ready set; a resume
-- removes the row and wakes the group.
CREATE TABLE group_pauses (
    topic     TEXT NOT NULL,
    group_key TEXT NOT NULL,
    paused_at INTEGER NOT NULL,
    PRIMARY KEY (topic, group_key)
);
