-- Cron invocations and cron locks. One row per fired tick: the unique (path, schedule,
-- scheduled_at) makes a tick fire once even when several processes run the scheduler.

CREATE TABLE cron_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    path         TEXT NOT NULL,
    schedule     TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    duration_ms  INTEGER,
    status_code  INTEGER,
    outcome      TEXT NOT NULL CHECK (outcome IN ('running', 'success', 'failed')),
    error        TEXT,
    UNIQUE (path, schedule, scheduled_at)
);
CREATE INDEX cron_runs_started ON cron_runs (started_at);

-- A named lock a cron handler takes so overlapping runs skip; it expires by itself.
CREATE TABLE cron_locks (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
