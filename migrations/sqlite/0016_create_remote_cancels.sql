-- Same number as migrations/postgres/0016. On Vercel a message lives in Vercel's queue
-- service, where vqs cannot mark it; an operator's cancel is recorded here instead, and the
-- consumer acknowledges each delivery of a recorded message without running it (its attempt
-- recorded `cancelled`). Rows are kept as long as a message can live (7 days) and removed by
-- the next cancel after that.
CREATE TABLE remote_cancels (
    message_id TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
