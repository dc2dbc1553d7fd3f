-- A playbook chiffon generated (a role no playbook applies, applied to a group the user picked): its exact
-- text, shown for approval and run from the plan; never written into the user's checkout.
ALTER TABLE plans ADD COLUMN IF NOT EXISTS generated_playbook text;
