-- Same number as migrations/postgres/0003 (PostgreSQL autovacuum tuning); SQLite has no
-- autovacuum to tune, so nothing to do here.
SELECT 1;
