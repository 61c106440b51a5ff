-- Same number as migrations/postgres/0009. Closing an attempt no longer changes an indexed
-- column (started_at stays when the attempt was recorded), and attempts left `running` by a
-- process that died are found from their deliveries' expired leases, not by status: the
-- status index goes, and the leased deliveries get one of their own.
DROP INDEX job_executions_status;
CREATE INDEX deliveries_leased ON deliveries (visible_at) WHERE state = 'leased';
