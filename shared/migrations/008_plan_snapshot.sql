-- The content-addressed snapshot of the repo a plan checked and runs; the approval records the same digest.
-- A plan whose approval outlived approvals.ttl is 'expired' and never runs.
ALTER TABLE plans ADD COLUMN IF NOT EXISTS snapshot_digest text;
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS snapshot_digest text;
