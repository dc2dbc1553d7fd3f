-- "Request changes" on the console: the new plan names the plan it replaces (the old one is rejected with the comment).
ALTER TABLE plans ADD COLUMN IF NOT EXISTS supersedes text REFERENCES plans(id);
CREATE INDEX IF NOT EXISTS plans_status_idx ON plans (status, created_at DESC);
