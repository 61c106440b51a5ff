-- Same number as migrations/sqlite/0020. Limits per topic (SPEC.md, "Flow control") and the
-- room a limited claim has, computed inside the claim statement itself.
--
-- Runtime overrides of a topic's limits live in its `topic_controls` row beside `paused`
-- (NULL: no override; the job type's default, if any, is in force). A rate limit is a pair:
-- at most `*_rate_limit` starts per `*_rate_period_seconds`.
ALTER TABLE topic_controls
    ADD COLUMN concurrency                     INTEGER,
    ADD COLUMN rate_limit                      INTEGER,
    ADD COLUMN rate_period_seconds             INTEGER,
    ADD COLUMN group_concurrency               INTEGER,
    ADD COLUMN group_rate_limit                INTEGER,
    ADD COLUMN group_rate_period_seconds       INTEGER;

-- A rate limit's bucket: GCRA's "theoretical arrival time" (microseconds since the epoch)
-- per (consumer group, topic), advanced by `interval_us` (period / limit, rounded up to the
-- microsecond) for each start. A start is allowed while `tat_us <= now + (limit - 1) *
-- interval_us`: a burst of `limit`, then `limit` per period on average, never more. Only
-- the group's serialised limited claim writes it (under `vqs_claim_room`'s lock).
CREATE TABLE rate_buckets (
    consumer_group TEXT NOT NULL COLLATE "C",
    topic          TEXT NOT NULL COLLATE "C",
    tat_us         BIGINT NOT NULL,
    interval_us    BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic)
);

-- The room a limited claim of `cg` has: at most `max_leased` leased at once across
-- processes (minus the live leases of holders other than `holder`, minus `here`, the
-- caller's own busy leases) and at most what the rate bucket (`cg`, `bucket_topic`) allows
-- now. NULL limits are not applied; with neither, 2^31 - 1.
--
-- It takes the group's transaction-scoped advisory lock FIRST, and only then counts: a
-- VOLATILE PL/pgSQL function runs each of its statements on a fresh snapshot under READ
-- COMMITTED, so the count sees every lease committed by the claim that held the lock before
-- (locks are released after the commit is visible). The claim statement calls it in its
-- LIMIT (`LIMIT LEAST($n, vqs_claim_room(...))`, evaluated once, before any row is locked),
-- so the lock is held until that statement's implicit transaction commits: one round trip
-- for the whole serialised claim. See crates/vqs-postgres/src/lease.rs for why the outer
-- statement's older snapshot cannot lease a row another claim leased meanwhile.
CREATE FUNCTION vqs_claim_room(
    cg TEXT,
    now_ts TIMESTAMPTZ,
    holder TEXT,
    here INTEGER,
    max_leased INTEGER,
    bucket_topic TEXT,
    rate_limit INTEGER,
    rate_period_seconds INTEGER
) RETURNS INTEGER
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    room BIGINT := 2147483647;
    live BIGINT;
    now_us BIGINT;
    interval_us BIGINT;
    tat BIGINT;
    base BIGINT;
    tolerance BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('vqs-claim:' || cg));
    IF max_leased IS NOT NULL THEN
        SELECT COUNT(*) INTO live FROM deliveries
         WHERE consumer_group = cg AND state = 'leased' AND visible_at > now_ts
           AND (holder IS NULL OR lease_holder IS DISTINCT FROM holder);
        room := LEAST(room, max_leased - live - CASE WHEN holder IS NULL THEN 0 ELSE here END);
    END IF;
    IF rate_limit IS NOT NULL AND rate_limit > 0 AND rate_period_seconds > 0 THEN
        now_us := (EXTRACT(EPOCH FROM now_ts) * 1000000)::BIGINT;
        interval_us := (rate_period_seconds::BIGINT * 1000000 + rate_limit - 1) / rate_limit;
        tolerance := (rate_limit - 1)::BIGINT * interval_us;
        SELECT b.tat_us INTO tat FROM rate_buckets b WHERE b.consumer_group = cg AND b.topic = bucket_topic;
        base := GREATEST(COALESCE(tat, now_us), now_us);
        IF base > now_us + tolerance THEN
            room := 0;
        ELSE
            room := LEAST(room, (now_us + tolerance - base) / interval_us + 1);
        END IF;
    END IF;
    RETURN GREATEST(room, 0)::INTEGER;
END
$$;
