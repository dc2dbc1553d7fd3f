-- Drift reports: check mode of every unit of an IaC repo (servers/ansible/drift.py). `chiffon drift`, the MCP tool
-- `drift`, the console and the chiffon_drift_tasks gauge read the newest of a repo; the one before it says which
-- drift is new (and opens an incident).
CREATE TABLE IF NOT EXISTS drift_reports (
    id           text PRIMARY KEY,
    repo         text NOT NULL,
    repo_commit  text,
    units        integer NOT NULL,
    drifted      jsonb NOT NULL DEFAULT '[]',
    clean        jsonb NOT NULL DEFAULT '[]',
    errors       jsonb NOT NULL DEFAULT '[]',
    never_run    jsonb NOT NULL DEFAULT '[]',
    new_drift    jsonb NOT NULL DEFAULT '[]',
    duration_s   double precision NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS drift_reports_repo_idx ON drift_reports (repo, created_at DESC);
