-- Which host runs a run, and when its process last said it still does (servers/ansible/execution.py): a worker on
-- another host reconciles a run whose heartbeat stopped, as one on the same host does from the dead pid.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS host text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz;
