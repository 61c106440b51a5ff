-- Compare the queue's keys byte by byte (COLLATE "C"). Ids, topics and consumer groups are
-- ASCII names, never text for people to read, yet under the database's default collation
-- (C.UTF-8, en_US.UTF-8, …) every comparison in their B-tree indexes went through strcoll:
-- a tenth of the server's time per job on the hot path. The order of message ids (UUID v7
-- in lowercase hex) is the same either way, so retention's id ranges keep their meaning.
-- Changing a column's collation rebuilds its indexes, not its table.
ALTER TABLE messages
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN topic TYPE TEXT COLLATE "C",
    ALTER COLUMN idempotency_key TYPE TEXT COLLATE "C";
ALTER TABLE deliveries
    ALTER COLUMN message_id TYPE TEXT COLLATE "C",
    ALTER COLUMN consumer_group TYPE TEXT COLLATE "C",
    ALTER COLUMN topic TYPE TEXT COLLATE "C",
    ALTER COLUMN state TYPE TEXT COLLATE "C",
    ALTER COLUMN lease_token TYPE TEXT COLLATE "C";
ALTER TABLE job_executions
    ALTER COLUMN message_id TYPE TEXT COLLATE "C",
    ALTER COLUMN consumer_group TYPE TEXT COLLATE "C",
    ALTER COLUMN topic TYPE TEXT COLLATE "C",
    ALTER COLUMN status TYPE TEXT COLLATE "C";
ALTER TABLE subscriptions
    ALTER COLUMN consumer_group TYPE TEXT COLLATE "C",
    ALTER COLUMN topic_pattern TYPE TEXT COLLATE "C",
    ALTER COLUMN prefix TYPE TEXT COLLATE "C";
ALTER TABLE dead_letters
    ALTER COLUMN message_id TYPE TEXT COLLATE "C",
    ALTER COLUMN topic TYPE TEXT COLLATE "C",
    ALTER COLUMN consumer_group TYPE TEXT COLLATE "C";
ALTER TABLE checkpoints
    ALTER COLUMN message_id TYPE TEXT COLLATE "C",
    ALTER COLUMN consumer_group TYPE TEXT COLLATE "C";
ALTER TABLE job_progress
    ALTER COLUMN message_id TYPE TEXT COLLATE "C",
    ALTER COLUMN consumer_group TYPE TEXT COLLATE "C",
    ALTER COLUMN topic TYPE TEXT COLLATE "C";
