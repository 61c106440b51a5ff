-- Same number as migrations/sqlite/0027. One index over a consumer group's unfinished
-- deliveries instead of two (issue 22): every publish and every lease wrote an entry in both
-- `deliveries_due (consumer_group, priority, visible_at)` and the time-ordered
-- `deliveries_live (consumer_group, visible_at)` — about 200 bytes of WAL and two index
-- insertions per job. What asked `deliveries_live` "when" now asks `deliveries_due`, one
-- descent per priority present (`vqs_live_priorities` below), and live-lease counts read
-- `deliveries_leased`, now keyed by consumer group too (the same one entry per lease).
DROP INDEX deliveries_live;
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_leased ON deliveries (consumer_group, visible_at) WHERE state = 'leased';

-- The priorities a consumer group has unfinished deliveries at, lowest first: a loose index
-- scan of `deliveries_due` (one descent per priority present, one more to find the end).
-- PostgreSQL 15 has no skip scan; reading the group's slice of the index in order instead
-- would walk its whole backlog.
CREATE FUNCTION vqs_live_priorities(cg TEXT) RETURNS TABLE (priority SMALLINT)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE prios AS (
        (SELECT d.priority FROM deliveries d WHERE d.consumer_group = cg AND d.state IN ('pending', 'leased')
         ORDER BY d.priority LIMIT 1)
        UNION ALL
        SELECT (SELECT d.priority FROM deliveries d WHERE d.consumer_group = cg AND d.state IN ('pending', 'leased')
                AND d.priority > prios.priority ORDER BY d.priority LIMIT 1)
        FROM prios WHERE prios.priority IS NOT NULL
    )
    SELECT prios.priority FROM prios WHERE prios.priority IS NOT NULL
$$;
