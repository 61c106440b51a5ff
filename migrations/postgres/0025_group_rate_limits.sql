-- Same number as migrations/sqlite/0025. A group rate limit (SPEC.md, "Flow control": at most
-- N starts per period per message group): the GCRA theoretical arrival time of each
-- (consumer group, group key), in microseconds since the epoch (NULL: never started under
-- one). The grouped claim reads it with the group's row locked, leases no more than it
-- allows, advances it by the number leased and parks the group until its next start is
-- allowed — a rate-limited group is out of the ready index until then.
ALTER TABLE flow_groups ADD COLUMN tat_us BIGINT;
