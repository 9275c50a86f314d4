-- Asynchronous buffered aggregation, FedBuff (issue #17). A group in this mode stores its
-- settings (`models::protocol::AsyncConfig`: buffer size, maximum staleness, staleness
-- exponent) in `async_json`; NULL is a synchronous group.
ALTER TABLE groups ADD COLUMN async_json TEXT;

-- An update trained from an earlier round's model and folded into a later round's buffer:
-- `trained_from` is the round number it trained in (NULL: the round it belongs to) and
-- `staleness` how many versions were published between its base model and the buffer's.
ALTER TABLE updates ADD COLUMN trained_from BIGINT;
ALTER TABLE updates ADD COLUMN staleness BIGINT NOT NULL DEFAULT 0;
