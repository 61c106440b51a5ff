-- PostgreSQL only. `vqs_group_rooms` (migrations 0032, 0033) counts each visited group's
-- live leases through an index keyed by group.
--
-- Why: the count said `d.state = 'leased'`, which lets the planner use `deliveries_leased`
-- (consumer group, lease end) — every lease of the consumer group, filtered by group key
-- row by row. PL/pgSQL keeps one plan per statement for the session, and the claim's
-- connection plans generically; a plan made while statistics showed no lease in flight (as
-- after a backlog is loaded and analysed) chose that index and then read every job in
-- flight once per visited group: about 160 leases read per group, 5 to 7 ms of a 15 ms
-- claim in the flow workload (BENCHMARKS.md). Said as `state IN ('pending', 'leased') AND
-- state <> 'pending'`, the condition still implies the predicates of the group indexes
-- (`deliveries_grouped_live`: consumer group, group key, due time) but no longer proves
-- `deliveries_leased`'s, so the count reads only the group's own live rows whatever the
-- statistics say (the test
-- `a_grouped_claim_counts_a_groups_leases_without_reading_every_lease_of_the_consumer_group`).
-- Otherwise the same function.
CREATE OR REPLACE FUNCTION vqs_group_rooms(
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
) RETURNS TABLE (ord INTEGER, key TEXT, room INTEGER, live BIGINT, lease_end TIMESTAMPTZ, cap_left INTEGER,
                tat_us BIGINT, row_xmin XID)
LANGUAGE plpgsql VOLATILE ROWS 20 AS $$
DECLARE
    cap INTEGER := GREATEST(lim, 1);
    keys TEXT[];
    tats BIGINT[];
    xmins XID[];
BEGIN
    IF limited THEN
        cap := LEAST(cap, vqs_claim_room(cg, now_ts, holder, here, max_leased, bucket_topic, rate_limit,
                                         rate_period_seconds));
        IF cap <= 0 THEN
            RETURN;
        END IF;
    END IF;
    -- The priorities present in the ready set, one index descent each, each one's ready
    -- groups one range of `flow_groups_ready`; the version of each row locked is the one
    -- returned (a row another claim changed since this statement's snapshot is re-checked
    -- on its newest version, EvalPlanQual, and that version is locked).
    SELECT array_agg(y.group_key), array_agg(y.tat_us), array_agg(y.xmin) INTO keys, tats, xmins FROM (
        WITH RECURSIVE prios AS (
            (SELECT f.priority FROM flow_groups f WHERE f.consumer_group = cg AND f.ready_at IS NOT NULL
             ORDER BY f.priority LIMIT 1)
            UNION ALL
            SELECT (SELECT f.priority FROM flow_groups f WHERE f.consumer_group = cg AND f.ready_at IS NOT NULL
                      AND f.priority > prios.priority ORDER BY f.priority LIMIT 1)
            FROM prios WHERE prios.priority IS NOT NULL)
        SELECT z.group_key, z.tat_us, z.xmin FROM prios CROSS JOIN LATERAL (
            SELECT f.group_key, f.tat_us, f.xmin FROM flow_groups f WHERE f.consumer_group = cg
              AND f.priority = prios.priority AND f.ready_at <= now_ts
              AND NOT EXISTS (SELECT 1 FROM group_pauses gp JOIN subscriptions s ON s.consumer_group = cg
                  AND (s.topic_pattern = gp.topic OR (s.is_prefix AND starts_with(gp.topic, s.prefix)))
                  WHERE gp.group_key = f.group_key)
            ORDER BY f.ready_at LIMIT cap FOR UPDATE SKIP LOCKED) z
        LIMIT cap) y;
    IF keys IS NULL THEN
        RETURN;
    END IF;
    -- After the lock: a fresh snapshot sees every lease and slot committed before it. Each
    -- group's leases and slots are read once each, counted and their earliest end taken.
    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY u.k = '', u.i))::INTEGER,
           u.k,
           (CASE WHEN u.k = '' THEN cap ELSE LEAST(per_group::BIGINT - l.n - s.n, cap) END)::INTEGER,
           l.n + s.n,
           LEAST(l.e, s.e),
           cap,
           tats[u.i],
           xmins[u.i]
    FROM UNNEST(keys) WITH ORDINALITY AS u(k, i)
    -- `state <> 'pending'` within the live states, not `state = 'leased'`: see the header.
    CROSS JOIN LATERAL (SELECT COUNT(*) AS n, MIN(d.visible_at) AS e FROM deliveries d
                        WHERE d.consumer_group = cg AND d.group_key = u.k
                          AND d.state IN ('pending', 'leased') AND d.state <> 'pending'
                          AND d.visible_at > now_ts) l
    CROSS JOIN LATERAL (SELECT COUNT(*) AS n, MIN(fs.expires_at) AS e FROM flow_group_slots fs
                        WHERE fs.consumer_group = cg AND fs.group_key = u.k AND fs.expires_at > now_ts) s
    ORDER BY 1;
END $$;
