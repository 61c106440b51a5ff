-- Fan out once per statement, not once per row: a bulk publish of 1,000 messages now runs
-- one INSERT … SELECT into deliveries and one pg_notify per topic, where the row trigger of
-- 0001 ran 1,000 of each (most of a bulk insert's time went to it).
DROP TRIGGER messages_fan_out ON messages;
DROP FUNCTION vqs_fan_out();

CREATE FUNCTION vqs_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (message_id, consumer_group, topic, state, visible_at, delivery_count, keyed, updated_at)
    -- A dead-letter replay: that consumer group only.
    SELECT n.id, n.only_group, n.topic, 'pending', n.deliver_at, 0, n.idempotency_key IS NOT NULL, n.created_at
    FROM inserted n
    WHERE n.only_group IS NOT NULL
    UNION ALL
    -- Every subscribed group, due at max(delay, the group's initial delay).
    SELECT n.id, s.consumer_group, n.topic, 'pending',
           GREATEST(n.deliver_at, n.created_at + make_interval(secs => s.initial_delay_s)), 0,
           n.idempotency_key IS NOT NULL, n.created_at
    FROM inserted n
    JOIN subscriptions s ON s.topic_pattern = n.topic OR (s.is_prefix AND starts_with(n.topic, s.prefix))
    WHERE n.only_group IS NULL
    ON CONFLICT DO NOTHING;
    -- Every process listening wakes at once (LISTEN vqs_published), once per topic.
    PERFORM pg_notify('vqs_published', t.topic) FROM (SELECT DISTINCT topic FROM inserted) t;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_fan_out AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION vqs_fan_out();
