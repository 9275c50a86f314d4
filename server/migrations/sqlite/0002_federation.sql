-- Federated groups, rounds, updates and the model registry.
-- Blobs (weights, updates, optimiser state, ONNX) are files under the data directory; rows hold
-- their paths relative to it. A blob is written and fsynced before its row commits.

CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    join_code TEXT NOT NULL UNIQUE,
    -- sha256 hex of the owner token; replaced by an account id once accounts exist.
    owner_token_hash TEXT NOT NULL,
    -- JSON: ModelTemplate, Hyperparameters, StrategyConfig.
    template_json TEXT NOT NULL,
    hyper_json TEXT NOT NULL,
    strategy_json TEXT NOT NULL,
    -- JSON WeightLayout once known (custom templates: at creation; others: at start).
    layout_json TEXT,
    -- JSON merged preprocessing spec (tabular groups, after the statistics phase).
    preprocessing_json TEXT,
    total_rounds INTEGER NOT NULL CHECK (total_rounds >= 1),
    min_clients INTEGER NOT NULL CHECK (min_clients >= 1),
    fraction_fit REAL NOT NULL CHECK (fraction_fit > 0 AND fraction_fit <= 1),
    round_deadline_secs INTEGER NOT NULL CHECK (round_deadline_secs >= 1),
    max_update_norm REAL,
    phase TEXT NOT NULL DEFAULT 'enrolling'
        CHECK (phase IN ('enrolling', 'statistics', 'training', 'finished')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups(id),
    name TEXT NOT NULL,
    -- sha256 hex of the member token; replaced by an account id once accounts exist.
    token_hash TEXT NOT NULL UNIQUE,
    num_samples INTEGER,
    ready_at TEXT,
    left_at TEXT,
    joined_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX members_group ON members(group_id);

-- Column summaries sent during a tabular group's statistics phase (never rows).
CREATE TABLE column_summaries (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    summary_json TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (group_id, member_id)
);

CREATE TABLE model_versions (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups(id),
    -- 0 for the initial weights, n for the global model after round n.
    round INTEGER NOT NULL,
    parent_id INTEGER REFERENCES model_versions(id),
    weights_path TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    num_params INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    -- JSON [{member_id, num_samples}] of the updates aggregated into this version.
    contributors_json TEXT NOT NULL DEFAULT '[]',
    optimizer_state_path TEXT,
    onnx_path TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (group_id, round)
);

CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups(id),
    number INTEGER NOT NULL CHECK (number >= 1),
    state TEXT NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'collecting', 'aggregating', 'closed', 'failed')),
    base_version_id INTEGER NOT NULL REFERENCES model_versions(id),
    result_version_id INTEGER REFERENCES model_versions(id),
    config_json TEXT NOT NULL,
    -- Unix seconds.
    opened_at INTEGER NOT NULL,
    deadline_at INTEGER NOT NULL,
    closed_at INTEGER,
    failure TEXT,
    metrics_json TEXT,
    UNIQUE (group_id, number)
);
CREATE INDEX rounds_live ON rounds(state, deadline_at);

-- Members selected for a round and what became of them.
CREATE TABLE round_members (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    status TEXT NOT NULL DEFAULT 'selected'
        CHECK (status IN ('selected', 'reported', 'failed', 'dropped')),
    failure TEXT,
    PRIMARY KEY (round_id, member_id)
);

CREATE TABLE updates (
    id INTEGER PRIMARY KEY,
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    num_samples INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    blob_path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (round_id, member_id)
);

-- A named deployed model points at one version; history records promotions and rollbacks.
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES model_versions(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE deployment_history (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES model_versions(id),
    action TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX deployment_history_name ON deployment_history(name, id);
