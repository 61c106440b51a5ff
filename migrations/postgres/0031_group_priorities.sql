-- Same number as migrations/sqlite/0031. The grouped claim takes the ready groups by
-- priority (SPEC.md, "Flow control": lower starts first), not only within each group: a
-- group is ordered by the best (lowest) priority among its waiting deliveries, due or not,
-- as last known; 32767 when none is known (after every real priority).
--
-- Invariant: `priority` is never worse than the group's best pending delivery, so no group
-- is passed over for longer than its messages' priority says. The claim sets it exactly
-- (under the group's row lock, when it parks the group); everything that makes a delivery
-- of the group pending (a publish, a lease that ends back to pending, a due time moved
-- sooner) appends a wake-up carrying that delivery's priority, and the fold keeps the
-- lower of the two.
ALTER TABLE flow_groups ADD COLUMN priority SMALLINT NOT NULL DEFAULT 32767;
ALTER TABLE flow_group_wakeups ADD COLUMN priority SMALLINT;
UPDATE flow_groups f SET priority = COALESCE((SELECT MIN(d.priority) FROM deliveries d
    WHERE d.consumer_group = f.consumer_group AND d.group_key = f.group_key AND d.state = 'pending'), 32767);

-- The ready set in claim order: by priority, then the longest ready.
DROP INDEX flow_groups_ready;
CREATE INDEX flow_groups_ready ON flow_groups (consumer_group, priority, ready_at) WHERE ready_at IS NOT NULL;

-- Fan-out: the wake-up carries the best priority published into the group.
CREATE OR REPLACE FUNCTION vqs_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH ins AS (
        INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at,
                                group_key, priority)
        -- A dead-letter replay: that consumer group only.
        SELECT n.id, n.only_group, n.topic, 'pending', n.deliver_at, 0, n.idempotency_key IS NOT NULL, n.created_at,
               CASE WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.consumer_group = n.only_group AND s.grouped)
                    THEN COALESCE(n.group_key, '') END,
               n.priority
        FROM inserted n
        WHERE n.only_group IS NOT NULL
        UNION ALL
        -- Every subscribed group, due at max(delay, the group's initial delay).
        SELECT n.id, s.consumer_group, n.topic, 'pending',
               GREATEST(n.deliver_at, n.created_at + make_interval(secs => s.initial_delay_s)), 0,
               n.idempotency_key IS NOT NULL, n.created_at,
               CASE WHEN s.grouped THEN COALESCE(n.group_key, '') END,
               n.priority
        FROM inserted n
        JOIN subscriptions s ON s.topic_pattern = n.topic OR (s.is_prefix AND starts_with(n.topic, s.prefix))
        WHERE n.only_group IS NULL
        ON CONFLICT DO NOTHING
        RETURNING consumer_group, group_key, visible_at, priority
    )
    INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at, priority)
    SELECT consumer_group, group_key, MIN(visible_at), MIN(priority) FROM ins WHERE group_key IS NOT NULL GROUP BY 1, 2;
    -- Every process listening wakes at once (LISTEN vqs_published), once per topic.
    PERFORM pg_notify('vqs_published', t.topic) FROM (SELECT DISTINCT topic FROM inserted) t;
    RETURN NULL;
END $$;

-- A lease that ends back to pending, or a pending delivery made due sooner, carries its
-- priority; a lease that ends otherwise (acknowledged, dead-lettered, cancelled) only wakes.
CREATE OR REPLACE FUNCTION vqs_flow_group_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at, priority)
    VALUES (NEW.consumer_group, NEW.group_key, LEAST(NEW.visible_at, NEW.updated_at),
            CASE WHEN NEW.state = 'pending' THEN NEW.priority END);
    RETURN NULL;
END $$;
