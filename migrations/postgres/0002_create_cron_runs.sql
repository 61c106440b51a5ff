-- Cron invocations and cron locks. One row per fired tick: the unique (path, schedule,
-- scheduled_at) makes a tick fire once across every process on the database.

CREATE TABLE cron_runs (
    id           BIGSERIAL PRIMARY KEY,
    path         TEXT NOT NULL,
    schedule     TEXT NOT NULL,
    scheduled_at TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    duration_ms  BIGINT,
    status_code  INTEGER,
    outcome      TEXT NOT NULL CHECK (outcome IN ('running', 'success', 'failed')),
    error        TEXT,
    UNIQUE (path, schedule, scheduled_at)
);
CREATE INDEX cron_runs_started ON cron_runs (started_at);

CREATE TABLE cron_locks (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
