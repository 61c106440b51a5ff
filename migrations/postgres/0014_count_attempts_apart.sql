-- Same number as migrations/sqlite/0014. The attempt number counts real runs of the job
-- (SPEC.md, "Attempts vs deliveries"), stored apart from the delivery count: a delivery
-- that does not run the job (a /_vqs receive or peek, a lease given back unused) raises
-- delivery_count but not attempts. Raised by the claim that records the attempt's
-- execution (the local dispatcher's), lowered again when that lease is given back unused.
-- Existing rows start equal to their delivery count (every delivery so far was an attempt).
ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET attempts = delivery_count WHERE delivery_count > 0;
