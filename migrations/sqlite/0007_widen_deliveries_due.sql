-- deliveries_due gains `state` as a last column, so that counting live deliveries (health,
-- dashboard, /metrics: `queue_depth`) is answered from the index alone: SQLite reads a
-- table row for every entry of a partial index whose query mentions a column the index
-- lacks, even the one in its WHERE. The claim query uses the same leading columns, and a
-- claim or a retry rewrites the entry anyway (visible_at changes), so writes cost the same.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (consumer_group, visible_at, state) WHERE state IN ('pending', 'leased');
