-- Flower's evaluate phase: members report metrics of a round's resulting global model on their
-- own held-out rows (never the rows). One row per member and round; a resend replaces it.
CREATE TABLE evaluations (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    num_samples INTEGER NOT NULL CHECK (num_samples >= 1),
    metrics_json TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (round_id, member_id)
);
