-- Plans, approvals, runs and their events: the main job's state.
CREATE TABLE plans (
    id            text PRIMARY KEY,
    request       text,
    repo          text NOT NULL,
    repo_commit   text,
    playbook      text NOT NULL,
    service       text,
    inventory     text NOT NULL,
    hosts         jsonb NOT NULL DEFAULT '[]',
    host_limit    text,
    extra_vars    jsonb NOT NULL DEFAULT '{}',
    match         jsonb,
    check_result  jsonb,
    diff          text NOT NULL DEFAULT '',
    risk          text NOT NULL,
    risk_reasons  jsonb NOT NULL DEFAULT '[]',
    status        text NOT NULL,
    audit_commit  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plans_status_idx ON plans (status);

CREATE TABLE approvals (
    id            bigserial PRIMARY KEY,
    plan_id       text NOT NULL REFERENCES plans(id),
    decision      text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    approver      text NOT NULL,
    channel       text NOT NULL,
    reason        text,
    audit_commit  text,
    decided_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX approvals_one_per_plan ON approvals (plan_id);

CREATE TABLE runs (
    id            text PRIMARY KEY,
    plan_id       text NOT NULL REFERENCES plans(id),
    status        text NOT NULL,
    rc            integer,
    stats         jsonb,
    artifact_data jsonb,
    changed       integer NOT NULL DEFAULT 0,
    failure       jsonb,
    audit_commit  text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE UNIQUE INDEX runs_one_per_plan ON runs (plan_id);

CREATE TABLE run_events (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL REFERENCES runs(id),
    seq           integer NOT NULL,
    event         text NOT NULL,
    host          text,
    task          text,
    module        text,
    changed       boolean,
    message       text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run_idx ON run_events (run_id, seq);
