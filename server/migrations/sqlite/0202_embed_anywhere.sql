-- Embedding on other sites (issue #21). A deployment's `allowed_origins_json` (0200) now also
-- opens a *private* model to anonymous visitors of those sites (their browsers send the
-- Origin; see SECURITY.md: not authentication). A public model is embedded by the listed
-- sites only, as before, unless its owner allows any site here. Existing rows keep their
-- meaning: 0, listed sites only.

ALTER TABLE deployments ADD COLUMN embed_anywhere INTEGER NOT NULL DEFAULT 0
    CHECK (embed_anywhere IN (0, 1));
