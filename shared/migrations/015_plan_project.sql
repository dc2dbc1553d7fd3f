-- A plan runs in its Ansible project's folder (ansible/ for ansible/ansible.cfg): "" is the repo root.
ALTER TABLE plans ADD COLUMN IF NOT EXISTS project text NOT NULL DEFAULT '';
