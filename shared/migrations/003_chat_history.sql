-- Chat history: sessions and their messages (chiffon-memory).
CREATE TABLE chat_sessions (
    id          text PRIMARY KEY,
    user_id     text,
    agent       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE chat_messages (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    agent       text,
    content     text NOT NULL,
    tool_calls  jsonb,
    tokens      integer,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_session_at ON chat_messages (session_id, at);
CREATE INDEX chat_messages_agent_at ON chat_messages (agent, at);
