-- Flower's evaluate phase: members report metrics of a round's resulting global model on their
-- own held-out rows (never the rows). One row per member and round; a resend replaces it.
CREATE TABLE evaluations (
    round_id BIGINT NOT NULL REFERENCES rounds(id),
    member_id BIGINT NOT NULL REFERENCES members(id),
    num_samples BIGINT NOT NULL CHECK (num_samples >= 1),
    metrics_json TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    PRIMARY KEY (round_id, member_id)
);
