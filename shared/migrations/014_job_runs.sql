-- The last run of each scheduled job (backup, purge): `chiffon doctor` says when it last ran and whether it worked.
CREATE TABLE IF NOT EXISTS job_runs (
    job        text PRIMARY KEY CHECK (job IN ('backup', 'purge')),
    ran_at     timestamptz NOT NULL DEFAULT now(),
    ok         boolean NOT NULL,
    detail     jsonb NOT NULL
);
