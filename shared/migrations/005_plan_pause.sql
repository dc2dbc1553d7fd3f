-- A plan approved for hosts that are busy or offline waits in status 'paused'; paused_reason says for whom.
ALTER TABLE plans ADD COLUMN IF NOT EXISTS paused_reason text;
