-- Same number as migrations/postgres/0031. The grouped claim takes the ready groups by
-- priority (SPEC.md, "Flow control": lower starts first), not only within each group: a
-- group is ordered by the best (lowest) priority among its waiting deliveries, due or not,
-- as last known; 32767 when none is known (after every real priority).
--
-- Invariant: `priority` is never worse than the group's best pending delivery. The claim
-- sets it exactly when it parks the group; a publish, a lease that ends back to pending and
-- a due time moved sooner lower it to that delivery's priority (the triggers below).
ALTER TABLE flow_groups ADD COLUMN priority INTEGER NOT NULL DEFAULT 32767;
UPDATE flow_groups SET priority = COALESCE((SELECT MIN(d.priority) FROM deliveries d
    WHERE d.consumer_group = flow_groups.consumer_group AND d.group_key = flow_groups.group_key
      AND d.state = 'pending'), 32767);

-- The ready set in claim order: by priority, then the longest ready.
DROP INDEX flow_groups_ready;
CREATE INDEX flow_groups_ready ON flow_groups (consumer_group, priority, ready_at) WHERE ready_at IS NOT NULL;

DROP TRIGGER deliveries_flow_group_insert;
CREATE TRIGGER deliveries_flow_group_insert AFTER INSERT ON deliveries
WHEN NEW.group_key IS NOT NULL
BEGIN
    INSERT INTO flow_groups (consumer_group, group_key, running, ready_at, priority)
    VALUES (NEW.consumer_group, NEW.group_key, 0, NEW.visible_at, NEW.priority)
    ON CONFLICT (consumer_group, group_key)
    DO UPDATE SET ready_at = MIN(COALESCE(ready_at, excluded.ready_at), excluded.ready_at),
                  priority = MIN(priority, excluded.priority);
END;

DROP TRIGGER deliveries_flow_group_wake;
CREATE TRIGGER deliveries_flow_group_wake AFTER UPDATE OF state, visible_at ON deliveries
WHEN OLD.group_key IS NOT NULL AND NEW.group_key IS NOT NULL
     AND ((OLD.state = 'leased' AND NEW.state <> 'leased') OR NEW.visible_at < OLD.visible_at)
BEGIN
    UPDATE flow_groups
    SET running = MAX(running - (OLD.state = 'leased' AND NEW.state <> 'leased'), 0),
        ready_at = MIN(COALESCE(ready_at, MIN(NEW.visible_at, NEW.updated_at)), MIN(NEW.visible_at, NEW.updated_at)),
        priority = CASE WHEN NEW.state = 'pending' THEN MIN(priority, NEW.priority) ELSE priority END
    WHERE consumer_group = NEW.consumer_group AND group_key = NEW.group_key;
END;
