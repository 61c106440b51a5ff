-- Same number as migrations/postgres/0022. Message priorities (SPEC.md, "Flow control";
-- docs/flow-control.md): an integer −100..=100 per message, lower starts first, FIFO
-- (by due time) within a priority. The message keeps it (views, replays), every delivery
-- carries it (the claim reads `deliveries` alone), and a dead letter keeps it for a replay.
ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- NULL at insert: filled from the message by the trigger below (as the group key is).
ALTER TABLE dead_letters ADD COLUMN priority INTEGER;

-- The claim's order is (priority, due time): a new due index in that order, so a claim
-- reads its first `limit` entries and sorts nothing. The time-ordered index stays, renamed,
-- for what asks "when" rather than "which first": the next due time of an idle dispatcher,
-- live-lease counts (limits, group concurrency, held reasons), stats and rescue.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_live ON deliveries (consumer_group, visible_at, state) WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_due ON deliveries (consumer_group, priority, visible_at) WHERE state IN ('pending', 'leased');
-- The same for a group's slice: its picks in (priority, due time) order; its counts and
-- its oldest live row (the ready set's `ready_at`) by time.
DROP INDEX deliveries_grouped;
CREATE INDEX deliveries_grouped_live ON deliveries (consumer_group, group_key, visible_at)
    WHERE state IN ('pending', 'leased') AND group_key IS NOT NULL;
CREATE INDEX deliveries_grouped ON deliveries (consumer_group, group_key, priority, visible_at)
    WHERE state IN ('pending', 'leased') AND group_key IS NOT NULL;

-- Fan-out: every delivery carries its message's priority.
DROP TRIGGER messages_fan_out;
CREATE TRIGGER messages_fan_out AFTER INSERT ON messages
BEGIN
    INSERT OR IGNORE INTO deliveries
        (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key, priority)
    SELECT NEW.id, s.consumer_group, NEW.topic, 'pending', MAX(NEW.deliver_at, NEW.created_at + s.initial_delay_us), 0,
           NEW.idempotency_key IS NOT NULL, NEW.created_at,
           CASE WHEN s.grouped = 1 THEN COALESCE(NEW.group_key, '') END, NEW.priority
    FROM subscriptions s
    WHERE NEW.only_group IS NULL
      AND (s.topic_pattern = NEW.topic OR (s.is_prefix = 1 AND substr(NEW.topic, 1, length(s.prefix)) = s.prefix));
    INSERT OR IGNORE INTO deliveries
        (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key, priority)
    SELECT NEW.id, NEW.only_group, NEW.topic, 'pending', NEW.deliver_at, 0, NEW.idempotency_key IS NOT NULL, NEW.created_at,
           CASE WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.consumer_group = NEW.only_group AND s.grouped = 1)
                THEN COALESCE(NEW.group_key, '') END, NEW.priority
    WHERE NEW.only_group IS NOT NULL;
END;

-- A dead letter keeps its message's priority (as its group key), so a replay is ordered as
-- the original was.
CREATE TRIGGER dead_letters_priority AFTER INSERT ON dead_letters
WHEN NEW.priority IS NULL
BEGIN
    UPDATE dead_letters SET priority = COALESCE((SELECT priority FROM messages WHERE id = NEW.message_id), 0)
    WHERE id = NEW.id;
END;
