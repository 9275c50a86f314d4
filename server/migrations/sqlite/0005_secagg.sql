-- Secure aggregation (SecAgg+, issue #13). A secure group keeps its settings (JSON
-- `b3o_models::secagg::SecAggConfig`); each of its rounds has a stage within `collecting`
-- and every message a member sent, committed before the member's 2xx.
ALTER TABLE groups ADD COLUMN secagg_json TEXT;

CREATE TABLE secagg_rounds (
    round_id INTEGER PRIMARY KEY REFERENCES rounds(id),
    stage TEXT NOT NULL DEFAULT 'advertise'
        CHECK (stage IN ('advertise', 'share', 'masked', 'unmask', 'done', 'failed')),
    -- Unix seconds: when the current stage stops waiting.
    stage_deadline INTEGER NOT NULL,
    -- JSON `EffectiveConfig` and the selected members in ring order (JSON array of ids).
    config_json TEXT NOT NULL,
    ring_json TEXT NOT NULL,
    -- Why the round cannot go on (set with stage 'failed').
    failure TEXT,
    -- 1 once the sum was unmasked, 0 when unmasking failed.
    unmasked INTEGER
);

CREATE TABLE secagg_keys (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    cipher_key BLOB NOT NULL,
    mask_key BLOB NOT NULL,
    PRIMARY KEY (round_id, member_id)
);

CREATE TABLE secagg_shares (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    from_member INTEGER NOT NULL REFERENCES members(id),
    to_member INTEGER NOT NULL REFERENCES members(id),
    ciphertext BLOB NOT NULL,
    PRIMARY KEY (round_id, from_member, to_member)
);
CREATE INDEX secagg_shares_to ON secagg_shares(round_id, to_member);

-- One answer per survivor: the JSON `UnmaskUpload` it sent.
CREATE TABLE secagg_unmask (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    member_id INTEGER NOT NULL REFERENCES members(id),
    shares_json TEXT NOT NULL,
    PRIMARY KEY (round_id, member_id)
);
