-- A plan's repo snapshot is kept in PostgreSQL too, so a worker on another host runs exactly what was approved
-- (servers/ansible/snapshot_store.py): the manifest per digest, each file's bytes once per SHA-256.
CREATE TABLE IF NOT EXISTS snapshot_manifests (
    digest     text PRIMARY KEY,
    manifest   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS snapshot_blobs (
    sha256  text PRIMARY KEY,
    content bytea NOT NULL
);
