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
--
-- SQLite cannot change a CHECK constraint: the table is rebuilt (nothing references it).

ALTER TABLE deployments ADD COLUMN gate_metric TEXT;
ALTER TABLE deployments ADD COLUMN gate_max_drop REAL;

CREATE TABLE deployment_history_new (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES model_versions(id),
    action TEXT NOT NULL CHECK (action IN ('promote', 'rollback', 'override', 'gate')),
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actor_user_id INTEGER,
    actor_name TEXT,
    note TEXT,
    undone_at TEXT
);
INSERT INTO deployment_history_new (id, name, version_id, action, at)
    SELECT id, name, version_id, action, at FROM deployment_history;
DROP TABLE deployment_history;
ALTER TABLE deployment_history_new RENAME TO deployment_history;
CREATE INDEX deployment_history_name ON deployment_history(name, id);
