-- Batch inference jobs (server/src/jobs): a user's CSV run through a deployed model in the
-- background. The input and the result are blobs under the data directory; rows hold their
-- paths relative to it. Timestamps are Unix seconds.

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The deployment named at submission and the version it served then: a promote during
    -- the job does not change the model a job runs.
    deployment TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES model_versions (id),
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- The uploaded file's name (for the result's download name) and where it is stored.
    input_name TEXT NOT NULL,
    input_path TEXT NOT NULL,
    input_bytes INTEGER NOT NULL,
    result_path TEXT,
    result_bytes INTEGER,
    rows_total INTEGER,
    rows_done INTEGER NOT NULL DEFAULT 0,
    -- Why it failed, naming the row and column for bad data.
    error TEXT,
    -- How many times it was started (a restart resumes queued and running jobs).
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX jobs_status ON jobs (status);
