-- Administrator hygiene (issue #21): disabled accounts. `users.must_change_password` (0100)
-- is now also set by an administrator's password reset, and enforced: until the account
-- changes its password, every call but reading `/api/me`, changing the password and signing
-- out answers 403 `password_change_required`.

-- When an administrator disabled the account (Unix seconds); NULL: enabled. A disabled
-- account cannot sign in and has no sessions or API tokens (revoked when it was disabled).
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
