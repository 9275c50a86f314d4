-- Differential privacy (issue #14). A DP group keeps what its creator asked for (JSON
-- `b3o_models::dp::DpConfig`) and the parameters it runs with (JSON `DpParams`, resolved again
-- when training starts), and why the budget ended training early.
ALTER TABLE groups ADD COLUMN dp_config_json TEXT;
ALTER TABLE groups ADD COLUMN dp_json TEXT;
ALTER TABLE groups ADD COLUMN dp_exhausted TEXT;

-- Each round of a DP group: what it clipped to and the noise (written when it opens), and once
-- it closes the epsilon spent with its version, the noisy share of unclipped updates and the
-- next round's clipping norm (adaptive clipping).
CREATE TABLE dp_rounds (
    round_id INTEGER PRIMARY KEY REFERENCES rounds(id),
    clipping_norm REAL NOT NULL,
    noise_multiplier REAL NOT NULL,
    update_noise_multiplier REAL NOT NULL,
    sampling_rate REAL NOT NULL,
    epsilon REAL,
    unclipped_fraction REAL,
    next_clipping_norm REAL
);
