-- Postgres dialect of ../sqlite/ (same versions, same tables): BIGINT for INTEGER, DOUBLE
-- PRECISION for REAL, BYTEA for BLOB, identity keys for INTEGER PRIMARY KEY, timestamps as the
-- same RFC 3339 text.
-- One row describing this installation; health checks read it.
CREATE TABLE instance (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    created_at TEXT NOT NULL DEFAULT (to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
);
INSERT INTO instance (id) VALUES (1);
