-- Agent tasks (chiffon-tasks): one row per submitted task, one agent_state row per step,
-- and the human inbox (escalations).
CREATE TABLE agent_tasks (
    id               text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('agent', 'pipeline', 'noop')),
    role             text NOT NULL,
    goal             text NOT NULL,
    inputs           jsonb NOT NULL DEFAULT '{}',
    priority         text NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    session_id       text NOT NULL,
    idempotency_key  text UNIQUE,
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'escalated',
                                                      'cancelled')),
    result           jsonb,
    error            text,
    attempts         integer NOT NULL DEFAULT 0,
    completions      integer NOT NULL DEFAULT 0,
    worker           text,
    tokens_used      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
) WITH (fillfactor = 70);  -- room for HOT updates: a task row is updated twice (claim, finish)
-- No index on status: it changes on every claim and finish, and an index on it would make those updates
-- non-HOT. Listing by status scans newest-first through agent_tasks_created_idx.
CREATE INDEX agent_tasks_created_idx ON agent_tasks (created_at);
CREATE INDEX agent_tasks_role_idx ON agent_tasks (role, created_at);

CREATE TABLE agent_state (
    id          bigserial PRIMARY KEY,
    task_id     text NOT NULL REFERENCES agent_tasks(id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    seq         integer NOT NULL,
    role        text NOT NULL,
    kind        text NOT NULL,
    content     jsonb NOT NULL,
    tokens      integer,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_state_task_idx ON agent_state (task_id, id);

CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    task_id     text REFERENCES agent_tasks(id) ON DELETE CASCADE,
    title       text NOT NULL,
    body        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX notifications_unread_idx ON notifications (read_at, created_at);
