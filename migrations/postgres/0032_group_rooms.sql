-- PostgreSQL only (SQLite's claim is in process: no round trips to save). The grouped
-- claim without a group rate limit becomes one statement (SPEC.md, "Flow control": the
-- claim stays one statement on the hot path): this function is its first CTE, the lease
-- and the park of every group it visited are the others. Before, the claim was a
-- transaction of its own, seven round trips: BEGIN, the ready groups, their live counts,
-- the claim, two parks, COMMIT.
--
-- `vqs_group_rooms` returns the ready groups of `cg` that the claim takes from, locked
-- (FOR UPDATE SKIP LOCKED: another claim has the others), each with the room it has under
-- `per_group` and what the park needs: its live leases and unexpired push slots before the
-- claim, and the earliest of their ends. In order: by priority, then the longest ready (the
-- `""` group, ungrouped messages, unlimited, last); at most `cap` groups, where `cap` is
-- `lim` under the consumer group's own limits (`vqs_claim_room`, whose advisory lock is then
-- held until the claim's statement commits). A group paused in a topic `cg` subscribes to is
-- never visited.
--
-- Why the counts are right although the claim's statement took its snapshot before: each
-- statement of a VOLATILE PL/pgSQL function takes a fresh one, and the counts are read after
-- the rows were locked, so they see every lease and slot committed by the claim (or the
-- push, `flow_group_start`) that held a group's lock before. The claim's own older
-- snapshot may still see such a lease as pending; `FOR UPDATE` re-checks the row's newest
-- version (EvalPlanQual) and skips it (see crates/vqs-postgres/src/lease.rs).
CREATE FUNCTION vqs_group_rooms(
    cg TEXT,
    now_ts TIMESTAMPTZ,
    per_group INTEGER,
    lim INTEGER,
    limited BOOLEAN,
    holder TEXT,
    here INTEGER,
    max_leased INTEGER,
    bucket_topic TEXT,
    rate_limit INTEGER,
    rate_period_seconds INTEGER
) RETURNS TABLE (ord INTEGER, key TEXT, room INTEGER, live BIGINT, lease_end TIMESTAMPTZ, cap_left INTEGER)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cap INTEGER := GREATEST(lim, 1);
    keys TEXT[];
BEGIN
    IF limited THEN
        cap := LEAST(cap, vqs_claim_room(cg, now_ts, holder, here, max_leased, bucket_topic, rate_limit,
                                         rate_period_seconds));
        IF cap <= 0 THEN
            RETURN;
        END IF;
    END IF;
    -- The priorities present in the ready set, one index descent each (`flow_groups_ready`
    -- is (consumer group, priority, ready_at)), each one's ready groups one range of it.
    SELECT array_agg(y.group_key) INTO keys FROM (
        WITH RECURSIVE prios AS (
            (SELECT f.priority FROM flow_groups f WHERE f.consumer_group = cg AND f.ready_at IS NOT NULL
             ORDER BY f.priority LIMIT 1)
            UNION ALL
            SELECT (SELECT f.priority FROM flow_groups f WHERE f.consumer_group = cg AND f.ready_at IS NOT NULL
                      AND f.priority > prios.priority ORDER BY f.priority LIMIT 1)
            FROM prios WHERE prios.priority IS NOT NULL)
        SELECT z.group_key FROM prios CROSS JOIN LATERAL (
            SELECT f.group_key FROM flow_groups f WHERE f.consumer_group = cg AND f.priority = prios.priority
              AND f.ready_at <= now_ts
              AND NOT EXISTS (SELECT 1 FROM group_pauses gp JOIN subscriptions s ON s.consumer_group = cg
                  AND (s.topic_pattern = gp.topic OR (s.is_prefix AND starts_with(gp.topic, s.prefix)))
                  WHERE gp.group_key = f.group_key)
            ORDER BY f.ready_at LIMIT cap FOR UPDATE SKIP LOCKED) z
        LIMIT cap) y;
    IF keys IS NULL THEN
        RETURN;
    END IF;
    -- After the lock: a fresh snapshot sees every lease and slot committed before it.
    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY c.k = '', c.i))::INTEGER,
           c.k,
           (CASE WHEN c.k = '' THEN cap ELSE LEAST(per_group::BIGINT - c.n, cap) END)::INTEGER,
           c.n,
           c.e,
           cap
    FROM (SELECT u.k, u.i,
                 (SELECT COUNT(*) FROM deliveries d WHERE d.consumer_group = cg AND d.group_key = u.k
                    AND d.state = 'leased' AND d.visible_at > now_ts)
                 + (SELECT COUNT(*) FROM flow_group_slots s WHERE s.consumer_group = cg AND s.group_key = u.k
                    AND s.expires_at > now_ts) AS n,
                 LEAST((SELECT MIN(d.visible_at) FROM deliveries d WHERE d.consumer_group = cg AND d.group_key = u.k
                          AND d.state = 'leased' AND d.visible_at > now_ts),
                       (SELECT MIN(s.expires_at) FROM flow_group_slots s WHERE s.consumer_group = cg
                          AND s.group_key = u.k AND s.expires_at > now_ts)) AS e
          FROM UNNEST(keys) WITH ORDINALITY AS u(k, i)) c
    ORDER BY 1;
END $$;
