-- Whether a run did what was asked for (servers/ansible/outcomes.py), and what a plan checks after its run
-- (servers/ansible/checks.py). `status` keeps its meaning: what Ansible's exit said.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS outcome text
    CHECK (outcome IS NULL OR outcome IN ('achieved', 'partial', 'failed', 'cancelled'));
ALTER TABLE runs ADD COLUMN IF NOT EXISTS outcome_reasons text[] NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN IF NOT EXISTS checks jsonb NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN IF NOT EXISTS skipped jsonb NOT NULL DEFAULT '[]';
ALTER TABLE plans ADD COLUMN IF NOT EXISTS expectations jsonb NOT NULL DEFAULT '[]';
ALTER TABLE plans ADD COLUMN IF NOT EXISTS last_outcome jsonb;
