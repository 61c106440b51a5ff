-- Same number as migrations/sqlite/0007 (deliveries_due gains `state` there so live counts
-- are index-only). PostgreSQL needs no change: an index-only scan of a partial index does
-- not need the columns of its predicate.
SELECT 1;
