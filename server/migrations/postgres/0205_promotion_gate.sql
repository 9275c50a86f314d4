-- Promotion gated on federated evaluation (issue #17). A deployment may hold a gate: a new
-- version's members' evaluation of `gate_metric` (sample-weighted) may be worse than the
-- deployed version's by at most `gate_max_drop` (both NULL: no gate).
--
-- The history becomes an audit trail: each row names who acted (`actor_user_id`, and the
-- account's display name then, `actor_name`, kept after the account is deleted) and a `note`
-- (the gate's numbers, the reason of an override); new actions `override` (promoted past the
-- gate) and `gate` (the gate set or removed); and a rollback no longer deletes the row it
-- undoes but stamps `undone_at` and adds a `rollback` row. What a rollback walks is the
-- `promote` and `override` rows not undone, newest first, as before.

ALTER TABLE deployments ADD COLUMN gate_metric TEXT;
ALTER TABLE deployments ADD COLUMN gate_max_drop DOUBLE PRECISION;

ALTER TABLE deployment_history DROP CONSTRAINT deployment_history_action_check;
ALTER TABLE deployment_history ADD CONSTRAINT deployment_history_action_check
    CHECK (action IN ('promote', 'rollback', 'override', 'gate'));
ALTER TABLE deployment_history ADD COLUMN actor_user_id BIGINT;
ALTER TABLE deployment_history ADD COLUMN actor_name TEXT;
ALTER TABLE deployment_history ADD COLUMN note TEXT;
ALTER TABLE deployment_history ADD COLUMN undone_at TEXT;
