-- A plan runs one unit of the repo: a playbook plus the tags that select a role or task file.
-- warnings: what the human should know before approving; blocked_reason: why it cannot be approved as-is
-- (no host matched, every task skipped by a condition).
ALTER TABLE plans ADD COLUMN IF NOT EXISTS tags jsonb NOT NULL DEFAULT '[]';
ALTER TABLE plans ADD COLUMN IF NOT EXISTS skip_tags jsonb NOT NULL DEFAULT '[]';
ALTER TABLE plans ADD COLUMN IF NOT EXISTS warnings jsonb NOT NULL DEFAULT '[]';
ALTER TABLE plans ADD COLUMN IF NOT EXISTS blocked_reason text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS warnings jsonb NOT NULL DEFAULT '[]';
