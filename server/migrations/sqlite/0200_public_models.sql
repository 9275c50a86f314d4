-- Sharing of deployed models (server/src/inference/sharing.rs): a public deployment answers
-- its package, ONNX, codeless and KServe V2 routes without an account; browsers on other
-- sites may call it only from the origins listed here (CORS). Our own origin always may.
-- Promote and roll back keep these columns (they only move `version_id`).

ALTER TABLE deployments ADD COLUMN public INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1));
-- JSON array of origins (`https://partner.example`, lower case, no path or trailing slash).
ALTER TABLE deployments ADD COLUMN allowed_origins_json TEXT NOT NULL DEFAULT '[]';
