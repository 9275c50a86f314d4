-- Drift monitoring (issue #18).
--
-- `reference_json`: the merged column summary of a version's training data
-- (`b3o_models::stats::Summary`, features and target, with each numeric column's sketch): the
-- reference its deployment's inputs and predictions are compared with. NULL for versions made
-- before this migration and for models without one (custom layouts).
ALTER TABLE model_versions ADD COLUMN reference_json TEXT;

-- What a deployment's inputs looked like, one row per window a replica summarised (or a
-- partner's contributed check, `source` = 'partner'): counts and sketches only, never a row.
-- A window is open while `closed_at` is NULL; its replica rewrites `summary_json` and `rows`
-- as it fills.
CREATE TABLE drift_windows (
    id INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('serving', 'partner')),
    replica_id TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT,
    rows INTEGER NOT NULL,
    summary_json TEXT NOT NULL
);
CREATE INDEX drift_windows_by_deployment ON drift_windows (deployment, opened_at);

-- A deployment's drift thresholds (`b3o_models::drift::DriftSettings`), set by its group's
-- owner; none: the defaults.
CREATE TABLE drift_settings (
    deployment TEXT PRIMARY KEY,
    settings_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Each deployment's latest verdict over its current window (written at every flush of a
-- replica that serves it), for the catalogue's "drifting" badge and the deployment views.
CREATE TABLE drift_status (
    deployment TEXT PRIMARY KEY,
    drifting INTEGER NOT NULL,
    drift_share DOUBLE PRECISION NOT NULL,
    rows INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
