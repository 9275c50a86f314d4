-- Work claimed by one replica at a time (issue #15). Batch jobs: the replica running a job
-- (`claimed_by`, its random identity) holds it until `lease_until` (Unix seconds), renewing
-- the lease while it runs; a job whose lease ran out (its replica died) is claimed again.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;

-- The same for a round's aggregation: the replica that moved the round to `aggregating`
-- holds it until `aggregation_lease_until`, renewing while it aggregates; a round whose
-- replica died is aggregated by another once the lease ran out.
ALTER TABLE rounds ADD COLUMN aggregated_by TEXT;
ALTER TABLE rounds ADD COLUMN aggregation_lease_until BIGINT;
