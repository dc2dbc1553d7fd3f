-- One-time codes already accepted (RFC 6238 section 5.2: a verifier must not accept an OTP a second time):
-- the 30 s time step of each code that approved a plan. A replayed code, within its window, is refused.
CREATE TABLE IF NOT EXISTS totp_used (
    time_step  bigint PRIMARY KEY,
    used_at    timestamptz NOT NULL DEFAULT now()
);
