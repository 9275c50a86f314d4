-- How a group's members send their updates (models::compress::UpdateEncoding, as its string:
-- f32, f16, int8, int8-tensor, topk:FRACTION). Existing groups keep the full-weight f32 format.
ALTER TABLE groups ADD COLUMN update_encoding TEXT NOT NULL DEFAULT 'f32';
