-- Job outcomes (issue 18; SPEC.md, "Job outcomes"). Same number as migrations/sqlite/0015.
-- An attempt may now end `snoozed` (the job asked to run later; the attempt is not spent) or
-- `cancelled` (the job cancelled itself, or an operator did), and a delivery may end
-- `cancelled` (the job, an operator or a purge ended it; final, like `acked`). The CHECKs of
-- 0001 refuse those values: drop them and add them again with the new values. Every row
-- already stored passes (the lists only grow); the check runs under the same lock as the
-- ALTER, once, at startup.
ALTER TABLE job_executions DROP CONSTRAINT job_executions_status_check;
ALTER TABLE job_executions ADD CONSTRAINT job_executions_status_check
    CHECK (status IN ('running', 'success', 'failed', 'snoozed', 'cancelled'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('pending', 'leased', 'acked', 'dead', 'cancelled'));
