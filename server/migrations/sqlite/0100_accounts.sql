-- Accounts, login sessions and API tokens (server/src/accounts). Timestamps are Unix seconds.
-- Numbered 0100 so that it never collides with the federation migrations (0002..); sqlx
-- applies any not-yet-applied version, whatever its order.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    -- Stored trimmed and lowercased by the server; NOCASE is a second guard for ASCII.
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL,
    organisation TEXT NOT NULL DEFAULT '',
    -- argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    -- Set for the generated first administrator; the app asks for a new password.
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    -- hex SHA-256 of the cookie value; the value itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- hex SHA-256 of the whole token (`b3o_` + 64 hex digits); shown once at creation.
    token_hash TEXT NOT NULL UNIQUE,
    -- The first characters, so people can tell their tokens apart.
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    -- NULL: never expires.
    expires_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
