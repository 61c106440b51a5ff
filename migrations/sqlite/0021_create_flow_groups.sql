-- Same number as migrations/postgres/0021. Message groups under a group concurrency limit
-- (SPEC.md, "Flow control"; docs/flow-control.md). A message may carry a group key (a
-- tenant, an account). A consumer group that claims under `group_concurrency` has its
-- subscription marked `grouped`: its deliveries carry the key ('' for an ungrouped message)
-- and one `flow_groups` row per (consumer group, group key) says when the claim must next
-- look at the group (`ready_at`). The claim takes the ready groups, oldest first, recounts
-- each one's live leases (`running`), leases up to the room left through
-- `deliveries_grouped`, and parks a full group until its earliest lease ends — so a full
-- group's backlog is never scanned, and a group whose lease ran out without a settlement
-- comes back by itself. SQLite has one writer, so publishes and settlements update the
-- group row directly (triggers below); PostgreSQL goes through a wake-up table instead.
ALTER TABLE messages ADD COLUMN group_key TEXT;
ALTER TABLE deliveries ADD COLUMN group_key TEXT;
ALTER TABLE dead_letters ADD COLUMN group_key TEXT;
ALTER TABLE subscriptions ADD COLUMN grouped INTEGER NOT NULL DEFAULT 0;

CREATE TABLE flow_groups (
    consumer_group TEXT NOT NULL,
    group_key      TEXT NOT NULL,
    -- Live leases of the group: counted by its last claim, less the leases ended since.
    running        INTEGER NOT NULL DEFAULT 0,
    -- The group concurrency the last claim applied (the admin API's held reason reads it).
    concurrency    INTEGER,
    -- When the claim must next look at the group (µs); NULL: nothing pending or leased.
    ready_at       INTEGER,
    PRIMARY KEY (consumer_group, group_key)
) WITHOUT ROWID;
CREATE INDEX flow_groups_ready ON flow_groups (consumer_group, ready_at) WHERE ready_at IS NOT NULL;

-- A group's live work in claim order; only grouped deliveries are in it.
CREATE INDEX deliveries_grouped ON deliveries (consumer_group, group_key, visible_at)
    WHERE state IN ('pending', 'leased') AND group_key IS NOT NULL;

DROP TRIGGER messages_fan_out;
CREATE TRIGGER messages_fan_out AFTER INSERT ON messages
BEGIN
    INSERT OR IGNORE INTO deliveries
        (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key)
    SELECT NEW.id, s.consumer_group, NEW.topic, 'pending', MAX(NEW.deliver_at, NEW.created_at + s.initial_delay_us), 0,
           NEW.idempotency_key IS NOT NULL, NEW.created_at,
           CASE WHEN s.grouped = 1 THEN COALESCE(NEW.group_key, '') END
    FROM subscriptions s
    WHERE NEW.only_group IS NULL
      AND (s.topic_pattern = NEW.topic OR (s.is_prefix = 1 AND substr(NEW.topic, 1, length(s.prefix)) = s.prefix));
    INSERT OR IGNORE INTO deliveries
        (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at, group_key)
    SELECT NEW.id, NEW.only_group, NEW.topic, 'pending', NEW.deliver_at, 0, NEW.idempotency_key IS NOT NULL, NEW.created_at,
           CASE WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.consumer_group = NEW.only_group AND s.grouped = 1)
                THEN COALESCE(NEW.group_key, '') END
    WHERE NEW.only_group IS NOT NULL;
END;

-- A new grouped delivery wakes its group (created when it is new).
CREATE TRIGGER deliveries_flow_group_insert AFTER INSERT ON deliveries
WHEN NEW.group_key IS NOT NULL
BEGIN
    INSERT INTO flow_groups (consumer_group, group_key, running, ready_at)
    VALUES (NEW.consumer_group, NEW.group_key, 0, NEW.visible_at)
    ON CONFLICT (consumer_group, group_key)
    DO UPDATE SET ready_at = MIN(COALESCE(ready_at, excluded.ready_at), excluded.ready_at);
END;

-- A grouped lease that ends (any settlement, a cancel, a rescue) frees a slot and wakes its
-- group; a grouped delivery made due sooner wakes it too.
CREATE TRIGGER deliveries_flow_group_wake AFTER UPDATE OF state, visible_at ON deliveries
WHEN OLD.group_key IS NOT NULL AND NEW.group_key IS NOT NULL
     AND ((OLD.state = 'leased' AND NEW.state <> 'leased') OR NEW.visible_at < OLD.visible_at)
BEGIN
    UPDATE flow_groups
    SET running = MAX(running - (OLD.state = 'leased' AND NEW.state <> 'leased'), 0),
        ready_at = MIN(COALESCE(ready_at, MIN(NEW.visible_at, NEW.updated_at)), MIN(NEW.visible_at, NEW.updated_at))
    WHERE consumer_group = NEW.consumer_group AND group_key = NEW.group_key;
END;

-- A dead letter keeps its message's group key, so a replay is grouped as the original was.
CREATE TRIGGER dead_letters_group AFTER INSERT ON dead_letters
WHEN NEW.group_key IS NULL
BEGIN
    UPDATE dead_letters SET group_key = (SELECT group_key FROM messages WHERE id = NEW.message_id) WHERE id = NEW.id;
END;
