-- Queue tables churn: every delivery is inserted, updated two or three times and deleted.
-- Vacuum and analyze them far more often than the defaults (20% / 10% of the table), so
-- dead index entries do not pile up under the claim query and its plan stays right.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE messages SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE job_executions SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
