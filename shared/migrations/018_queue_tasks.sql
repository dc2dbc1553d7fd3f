-- The queue engine is no longer the agents' own (chiffon.shared.queue runs agent, pipeline, noop and infra tasks):
-- its tables, their indexes, constraints and sequence get neutral names. Renames keep every row, the foreign keys
-- (notifications.task_id follows the table) and the column defaults (nextval refers to the sequence itself).
ALTER TABLE agent_tasks RENAME TO queue_tasks;
ALTER TABLE queue_tasks RENAME CONSTRAINT agent_tasks_pkey TO queue_tasks_pkey;
ALTER TABLE queue_tasks RENAME CONSTRAINT agent_tasks_idempotency_key_key TO queue_tasks_idempotency_key_key;
ALTER TABLE queue_tasks RENAME CONSTRAINT agent_tasks_kind_check TO queue_tasks_kind_check;
ALTER TABLE queue_tasks RENAME CONSTRAINT agent_tasks_priority_check TO queue_tasks_priority_check;
ALTER TABLE queue_tasks RENAME CONSTRAINT agent_tasks_status_check TO queue_tasks_status_check;
ALTER INDEX agent_tasks_created_idx RENAME TO queue_tasks_created_idx;
ALTER INDEX agent_tasks_role_idx RENAME TO queue_tasks_role_idx;
ALTER INDEX agent_tasks_plan_idx RENAME TO queue_tasks_plan_idx;

ALTER TABLE agent_state RENAME TO queue_steps;
ALTER TABLE queue_steps RENAME CONSTRAINT agent_state_pkey TO queue_steps_pkey;
ALTER TABLE queue_steps RENAME CONSTRAINT agent_state_task_id_fkey TO queue_steps_task_id_fkey;
ALTER INDEX agent_state_task_idx RENAME TO queue_steps_task_idx;
ALTER SEQUENCE agent_state_id_seq RENAME TO queue_steps_id_seq;
