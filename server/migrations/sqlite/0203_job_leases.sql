-- Batch jobs claimed by one replica at a time (issue #15): the replica running a job
-- (`claimed_by`, its random identity) holds it until `lease_until` (Unix seconds), renewing
-- the lease while it runs; a job whose lease ran out (its replica died) is claimed again.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
