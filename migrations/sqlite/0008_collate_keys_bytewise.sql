-- Same number as migrations/postgres/0008 (the queue's keys compared byte by byte there).
-- SQLite's default collation is already BINARY: nothing to change.
SELECT 1;
