-- The LLM cost ledger: one row per answered (or failed) chat request.
CREATE TABLE llm_requests (
    id            bigserial PRIMARY KEY,
    request_id    text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    caller        text NOT NULL,
    tier          text NOT NULL,
    backend       text NOT NULL,
    model         text NOT NULL,
    external      boolean NOT NULL,
    status        text NOT NULL CHECK (status IN ('ok', 'error')),
    tokens_in     integer NOT NULL DEFAULT 0,
    tokens_out    integer NOT NULL DEFAULT 0,
    latency_ms    real,
    ttft_ms       real,
    tokens_per_s  real,
    cost_usd      numeric(14, 6) NOT NULL DEFAULT 0,
    note          text
);
CREATE INDEX llm_requests_at ON llm_requests (at);
CREATE INDEX llm_requests_tier_at ON llm_requests (tier, at);
