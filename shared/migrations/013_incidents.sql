-- Incidents: errors from the error bus (chiffon:errors) grouped by what they share (orchestrator/incidents.py).
CREATE TABLE IF NOT EXISTS incidents (
    id            text PRIMARY KEY,
    keys          text[] NOT NULL,
    status        text NOT NULL CHECK (status IN ('open', 'resolved')),
    severity      text NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    title         text NOT NULL,
    sources       text[] NOT NULL,
    events        bigint NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    escalated_at  timestamptz,
    last_event    jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_open_keys_idx ON incidents USING gin (keys) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS incidents_updated_idx ON incidents (updated_at DESC);
