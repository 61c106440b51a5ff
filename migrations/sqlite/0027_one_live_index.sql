-- Same number as migrations/postgres/0027. One index over a consumer group's unfinished
-- deliveries instead of two (issue 22): every publish, lease and acknowledgement changed
-- entries in both `deliveries_due (consumer_group, priority, visible_at)` and the
-- time-ordered `deliveries_live (consumer_group, visible_at, state)`. What asked
-- `deliveries_live` "when" now asks `deliveries_due`, one seek per priority present, and
-- live-lease counts read `deliveries_leased`, now keyed by consumer group too.
DROP INDEX deliveries_live;
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_leased ON deliveries (consumer_group, visible_at) WHERE state = 'leased';
