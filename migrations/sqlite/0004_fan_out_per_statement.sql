-- PostgreSQL only (statement-level fan-out with a transition table). SQLite has row
-- triggers only; its single writer already batches inserts. Kept so both dialects share
-- migration numbers.
SELECT 1;
