-- Groups and memberships belong to accounts (issue 6). The bearer-token columns of 0002 stay
-- (SQLite cannot drop a UNIQUE column without rebuilding tables that others reference) but
-- are no longer read: new rows get the hash of a random secret nobody holds, so no token
-- authenticates. Groups and members created before this migration have no account: such
-- groups are system-owned (administrators manage them) and such members can no longer act.

-- The account that created the group; NULL for system-owned (demo, pre-accounts) groups.
ALTER TABLE groups ADD COLUMN owner_user_id INTEGER REFERENCES users (id);
CREATE INDEX groups_owner ON groups (owner_user_id);

-- The account behind a membership. A user who leaves and joins again gets a new row; at most
-- one membership per account and group is active (left_at IS NULL) at a time.
ALTER TABLE members ADD COLUMN user_id INTEGER REFERENCES users (id);
CREATE UNIQUE INDEX members_active_user ON members (group_id, user_id)
    WHERE left_at IS NULL AND user_id IS NOT NULL;
CREATE INDEX members_user ON members (user_id);
