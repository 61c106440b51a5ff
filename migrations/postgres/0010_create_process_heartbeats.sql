-- Crash rescue by process heartbeat (issue 15). A serving process beats every few seconds
-- (one row per process, one write per beat, whatever the number of jobs it runs), and each
-- lease its dispatcher takes for a job it runs itself names the process (`lease_holder`).
-- When a process stops beating, another one makes its leases due at once, so a crashed
-- job is redelivered within about a minute instead of when its lease (up to the job's
-- timeout + 30 s, an hour at most) runs out. Leases with no holder (the `/_vqs` receive
-- API, a push to another process) keep the visibility-timeout behaviour.
-- Same number as migrations/sqlite/0010.
CREATE TABLE processes (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
-- Not indexed: the claim writes it on a row whose indexed visible_at changes anyway, and the
-- rescue reads it only among the (few) leased deliveries, through deliveries_leased.
ALTER TABLE deliveries ADD COLUMN lease_holder TEXT;
