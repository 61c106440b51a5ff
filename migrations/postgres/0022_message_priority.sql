-- Same number as migrations/sqlite/0022. Message priorities (SPEC.md, "Flow control";
-- docs/flow-control.md): an integer −100..=100 per message, lower starts first, FIFO
-- (by due time) within a priority. The message keeps it (views, replays), every delivery
-- carries it (the claim reads `deliveries` alone), and a dead letter keeps it for a replay.
ALTER TABLE messages ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;
-- NULL at insert: filled from the message by the trigger below (as the group key is).
ALTER TABLE dead_letters ADD COLUMN priority SMALLINT;

-- The claim's order is (priority, due time): the due index is rebuilt in that order so a
-- claim reads its first `limit` entries and sorts nothing. The time-ordered index stays,
-- renamed, for what asks "when" rather than "which first": the next due time of an idle
-- dispatcher, live-lease counts (limits, group concurrency, held reasons), stats and rescue.
ALTER INDEX deliveries_due RENAME TO deliveries_live;
CREATE INDEX deliveries_due ON deliveries (consumer_group, priority, visible_at)
    WHERE state IN ('pending', 'leased');
-- The same for a group's slice: its picks in (priority, due time) order; its counts and
-- its oldest live row (the ready set's `ready_at`) by time.
ALTER INDEX deliveries_grouped RENAME TO deliveries_grouped_live;
CREATE INDEX deliveries_grouped ON deliveries (consumer_group, group_key, priority, visible_at)
    WHERE state IN ('pending', 'leased') AND group_key IS NOT NULL;

-- Fan-out: every delivery carries its message's priority.
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
        RETURNING consumer_group, group_key, visible_at
    )
    INSERT INTO flow_group_wakeups (consumer_group, group_key, due_at)
    SELECT consumer_group, group_key, MIN(visible_at) FROM ins WHERE group_key IS NOT NULL GROUP BY 1, 2;
    -- Every process listening wakes at once (LISTEN vqs_published), once per topic.
    PERFORM pg_notify('vqs_published', t.topic) FROM (SELECT DISTINCT topic FROM inserted) t;
    RETURN NULL;
END $$;

-- A dead letter keeps its message's group key and priority, so a replay is grouped and
-- ordered as the original was.
CREATE OR REPLACE FUNCTION vqs_dead_letter_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.group_key IS NULL THEN
        NEW.group_key := (SELECT group_key FROM messages WHERE id = NEW.message_id);
    END IF;
    IF NEW.priority IS NULL THEN
        NEW.priority := COALESCE((SELECT priority FROM messages WHERE id = NEW.message_id), 0);
    END IF;
    RETURN NEW;
END $$;
