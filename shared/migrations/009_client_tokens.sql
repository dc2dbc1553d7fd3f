-- Named bearer tokens, one per IDE client or machine (`chiffon token create NAME`): only the SHA-256 of the
-- token is stored; the token itself is shown once.
CREATE TABLE IF NOT EXISTS client_tokens (
    name          text PRIMARY KEY,
    token_sha256  text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
