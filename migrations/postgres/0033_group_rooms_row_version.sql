-- PostgreSQL only. `vqs_group_rooms` (migration 0032) also returns, for each group it
-- locked, the `xmin` of the row version it locked (`row_xmin`).
--
-- Why: the one-statement grouped claim parks every group it visited from its statement's
-- snapshot, taken before the function locked the groups. Another claim may have parked one
-- of them in between, having folded a wake-up — a publish — that this snapshot does not
-- see; parking from this snapshot would undo that, and a group with nothing else live
-- would leave the ready set with the new message in it, stranded until something else woke
-- the group. The park compares `row_xmin` with the `xmin` of the version its snapshot
-- sees: when they differ, the group is parked ready now and the next claim, on a newer
-- snapshot, parks it right (crates/vqs-postgres/src/lease.rs, `push_park`; the test
-- `a_claim_parking_from_an_older_snapshot_never_strands_a_group_another_claim_parked`).
-- Otherwise the same function.
DROP FUNCTION vqs_group_rooms(TEXT, TIMESTAMPTZ, INTEGER, INTEGER, BOOLEAN, TEXT, INTEGER, INTEGER, TEXT, INTEGER,
                              INTEGER);

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
    CROSS JOIN LATERAL (SELECT COUNT(*) AS n, MIN(d.visible_at) AS e FROM deliveries d
                        WHERE d.consumer_group = cg AND d.group_key = u.k AND d.state = 'leased'
                          AND d.visible_at > now_ts) l
    CROSS JOIN LATERAL (SELECT COUNT(*) AS n, MIN(fs.expires_at) AS e FROM flow_group_slots fs
                        WHERE fs.consumer_group = cg AND fs.group_key = u.k AND fs.expires_at > now_ts) s
    ORDER BY 1;
END $$;
