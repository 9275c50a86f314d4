-- The owner's controls of a group's training (server/src/federation/control.rs): paused
-- (the live round finishes, no new round opens until it resumes) and cancelled (the live
-- round fails, the group is finished early). Unix seconds; NULL when not so.
ALTER TABLE groups ADD COLUMN paused_at BIGINT;
ALTER TABLE groups ADD COLUMN cancelled_at BIGINT;
