-- Closing an attempt (running → success | failed) rewrites its job_executions row. While any
-- index covered a column that changes, every close wrote a new entry into all four of the
-- table's indexes; now the close changes only unindexed columns (status, finished_at,
-- duration_ms, error — started_at no longer moves, see ExecutionFinishParams::began_at) and
-- fits beside the row on its page, so PostgreSQL updates it in place (a HOT update: no index
-- is touched). Half of each page is left free for that (inserts fill it to 50 %; the space
-- of the closed versions is reclaimed as the pages are revisited).
DROP INDEX job_executions_status;
ALTER TABLE job_executions SET (fillfactor = 50);

-- What the status index found for the maintenance loop — attempts left `running` by a process
-- that died — is found from the other side now: deliveries whose lease ran out. A claim or a
-- retry rewrites the delivery row anyway, so this index costs one entry per lease.
CREATE INDEX deliveries_leased ON deliveries (visible_at) WHERE state = 'leased';
