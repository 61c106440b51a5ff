-- Same number as migrations/postgres/0012. A replay keeps the message's trace headers, so
-- dead letters keep them too. And every operator action on a dead letter (replay, discard)
-- is one transaction that records it here while taking the dead letter out: of concurrent
-- actions on one dead letter exactly one succeeds (the primary key), and the others are
-- told what was done instead of a bare "not found". Rows older than 7 days are removed by
-- the next action.
ALTER TABLE dead_letters ADD COLUMN headers_json TEXT;

CREATE TABLE dead_letter_settlements (
    id         INTEGER PRIMARY KEY,
    action     TEXT NOT NULL CHECK (action IN ('replayed', 'discarded')),
    settled_at INTEGER NOT NULL,
    -- The replay's new message.
    message_id TEXT
);
CREATE INDEX dead_letter_settlements_settled ON dead_letter_settlements (settled_at);
