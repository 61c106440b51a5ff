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
) RETURNS TABLE (ord INTEGER, key TEXT, room INTEGER, live BIGINT, lease_end TIMESTAMPTZ, cap_left INTEGER,
                tat_us BIGINT)
-- About one claim's worth of groups (the default guess, 1,000, has the planner park them by
-- hashing every `flow_groups` row of the consumer group rather than looking each one up).
LANGUAGE plpgsql VOLATILE ROWS 20 AS $$
DECLARE
    cap INTEGER := GREATEST(lim, 1);
    keys TEXT[];
    tats BIGINT[];
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
    SELECT array_agg(y.group_key), array_agg(y.tat_us) INTO keys, tats FROM (
        WITH RECURSIVE prios AS (
            (SELECT f.priority FROM flow_groups f WHERE f.consumer_group = cg AND f.ready_at IS NOT NULL
             ORDER BY f.priority LIMIT 1)
            UNION ALL
            SELECT (SELECT f.priority FROM flow_groups f WHERE f.consumer_group = cg AND f.ready_at IS NOT NULL
                      AND f.priority > prios.priority ORDER BY f.priority LIMIT 1)
            FROM prios WHERE prios.priority IS NOT NULL)
        SELECT z.group_key, z.tat_us FROM prios CROSS JOIN LATERAL (
            SELECT f.group_key, f.tat_us FROM flow_groups f WHERE f.consumer_group = cg AND f.priority = prios.priority
              AND f.ready_at <= now_ts
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
           tats[u.i]
    FROM UNNEST(keys) WITH ORDINALITY AS u(k, i)
    CROSS JOIN LATERAL (SELECT COUNT(*) AS n, MIN(d.visible_at) AS e FROM deliveries d
                        WHERE d.consumer_group = cg AND d.group_key = u.k AND d.state = 'leased'
                          AND d.visible_at > now_ts) l
    CROSS JOIN LATERAL (SELECT COUNT(*) AS n, MIN(fs.expires_at) AS e FROM flow_group_slots fs
                        WHERE fs.consumer_group = cg AND fs.group_key = u.k AND fs.expires_at > now_ts) s
    ORDER BY 1;
END $$;

-- The fold of `cg`'s wake-ups into its groups (crates/vqs-postgres/src/flow_groups.rs,
-- `fold_wakeups`), run before each grouped claim. Every wake-up is inserted and deleted
-- within milliseconds, so between two autovacuums the table is mostly dead rows, all under
-- the one key the fold asks for. The planner, estimating a few rows, takes a bitmap scan (or
-- a sequential one), which visits every dead row on every fold and never marks an index
-- entry dead: 2.0 ms per fold in the flow benchmark. A plain index scan marks the entries
-- of dead rows as it passes them (later scans skip them, page splits drop them), so the fold
-- reads little more than its live rows: 0.21 against 0.47 ms for 800 folds of 27 wake-ups
-- on a scratch copy of the table (BENCHMARKS.md).
CREATE FUNCTION vqs_fold_wakeups(cg TEXT) RETURNS VOID
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
    WITH w AS (DELETE FROM flow_group_wakeups w0 WHERE w0.consumer_group = cg
               RETURNING w0.group_key, w0.due_at, w0.priority)
    INSERT INTO flow_groups AS f (consumer_group, group_key, running, ready_at, priority)
    SELECT cg, w.group_key, 0, MIN(w.due_at), COALESCE(MIN(w.priority), 32767) FROM w
    GROUP BY w.group_key ORDER BY w.group_key
    ON CONFLICT (consumer_group, group_key) DO UPDATE
    SET ready_at = LEAST(COALESCE(f.ready_at, EXCLUDED.ready_at), EXCLUDED.ready_at),
        priority = LEAST(f.priority, EXCLUDED.priority);
END $$;
