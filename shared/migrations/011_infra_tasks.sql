-- Plans run as queued tasks of kind 'infra' (one queue engine for agents and runs: chiffon.orchestrator.runs).
ALTER TABLE agent_tasks DROP CONSTRAINT IF EXISTS agent_tasks_kind_check;
ALTER TABLE agent_tasks ADD CONSTRAINT agent_tasks_kind_check CHECK (kind IN ('agent', 'pipeline', 'noop', 'infra'));
CREATE INDEX IF NOT EXISTS agent_tasks_plan_idx ON agent_tasks ((inputs->>'plan_id')) WHERE kind = 'infra';
