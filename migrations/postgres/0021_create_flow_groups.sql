-- Same number as migrations/sqlite/0021. Message groups under a group concurrency limit
-- (SPEC.md, "Flow control"; docs/flow-control.md). A message may carry a group key (a
-- tenant, an account). A consumer group that claims under `group_concurrency` has its
-- subscription marked `grouped`: its deliveries carry the key ('' for an ungrouped message)
-- and one `flow_groups` row per (consumer group, group key) says when the claim must next
-- look at the group (`ready_at`). The claim takes the ready groups (`FOR UPDATE SKIP
-- LOCKED`, oldest first), recounts each one's live leases under its row lock (`running`),
-- leases up to the room left through `deliveries_grouped`, and parks a full group until its
-- earliest lease ends — so a full group's backlog is never scanned, and a group whose
-- lease ran out without a settlement comes back by itself.
--
-- Settlements, rescues and publishes do not touch `flow_groups` rows (their lock order would
-- differ from the claim's, and two batched acknowledgements could deadlock): they append to
-- `flow_group_wakeups`, which the next claim of the consumer group folds into `ready_at`.
ALTER TABLE messages ADD COLUMN group_key TEXT COLLATE "C";
ALTER TABLE deliveries ADD COLUMN group_key TEXT COLLATE "C";
ALTER TABLE dead_letters ADD COLUMN group_key TEXT COLLATE "C";
ALTER TABLE subscriptions ADD COLUMN grouped BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE flow_groups (
    consumer_group TEXT COLLATE "C" NOT NULL,
    group_key      TEXT COLLATE "C" NOT NULL,
    -- Live leases of the group as its last claim counted them (recounted at every claim).
    running        INTEGER NOT NULL DEFAULT 0,
    -- The group concurrency the last claim applied (the admin API's held reason reads it).
    concurrency    INTEGER,
    -- When the claim must next look at the group; NULL: nothing pending or leased.
    ready_at       TIMESTAMPTZ,
    PRIMARY KEY (consumer_group, group_key)
);
CREATE INDEX flow_groups_ready ON flow_groups (consumer_group, ready_at) WHERE ready_at IS NOT NULL;

CREATE TABLE flow_group_wakeups (
    consumer_group TEXT COLLATE "C" NOT NULL,
    group_key      TEXT COLLATE "C" NOT NULL,
    due_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX flow_group_wakeups_group ON flow_group_wakeups (consumer_group);

-- A group's live work in claim order; only grouped deliveries are in it.
CREATE INDEX deliveries_grouped ON deliveries (consumer_group, group_key, visible_at)
    WHERE state IN ('pending', 'leased') AND group_key IS NOT NULL;

-- Fan-out: a grouped subscription's delivery carries the key, and its group is woken.
CREATE OR REPLACE FUNCTION vqs_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH ins AS (
        INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key)
        -- A dead-letter replay: that consumer group only.
        SELECT n.id, n.only_group, n.topic, 'pending', n.deliver_at, 0, n.idempotency_key IS NOT NULL, n.created_at,
               CASE WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.consumer_group = n.only_group AND s.grouped)
                    THEN COALESCE(n.group_key, '') END
        FROM inserted n
        WHERE n.only_group IS NOT NULL
        UNION ALL
        -- Every subscribed group, due at max(delay, the group's initial delay).
        SELECT n.id, s.consumer_group, n.topic, 'pending',
               GREATEST(n.deliver_at, n.created_at + make_interval(secs => s.initial_delay_s)), 0,
               n.idempotency_key IS NOT NULL, n.created_at,
               CASE WHEN s.grouped THEN COALESCE(n.group_key, '') END
        FROM inserted n
        JOIN subscriptions s ON s.topic_pattern = n.topic OR (s.is_prefix AND starts_with(n.topic, s.prefix))
        WHERE n.only_group IS NULL
        ON CONFLICT DO NOTHING
        RETURNING consumer_group, group_key, visible_at
    )
    INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at)
    SELECT consumer_group, group_key, MIN(visible_at) FROM ins WHERE group_key IS NOT NULL GROUP BY 1, 2;
    -- Every process listening wakes at once (LISTEN vqs_published), once per topic.
    PERFORM pg_notify('vqs_published', t.topic) FROM (SELECT DISTINCT topic FROM inserted) t;
    RETURN NULL;
END $$;

-- A grouped lease that ends (any settlement, a cancel, a rescue) or a grouped delivery made
-- due sooner wakes its group.
CREATE FUNCTION vqs_flow_group_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at)
    VALUES (NEW.consumer_group, NEW.group_key, LEAST(NEW.visible_at, NEW.updated_at));
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_flow_group_wake AFTER UPDATE ON deliveries FOR EACH ROW
    WHEN (OLD.group_key IS NOT NULL AND NEW.group_key IS NOT NULL
          AND ((OLD.state = 'leased' AND NEW.state <> 'leased') OR NEW.visible_at < OLD.visible_at))
    EXECUTE FUNCTION vqs_flow_group_wake();

-- A dead letter keeps its message's group key, so a replay is grouped as the original was.
CREATE FUNCTION vqs_dead_letter_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.group_key IS NULL THEN
        NEW.group_key := (SELECT group_key FROM messages WHERE id = NEW.message_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER dead_letters_group BEFORE INSERT ON dead_letters FOR EACH ROW EXECUTE FUNCTION vqs_dead_letter_group();
