//! Real-browser tests: each starts its own `b3o serve` and headless Chromium.

mod accounts_ui;
mod app_shell;
// Issue 8 (open): the suites below were written this session against the engine, PWA and embed
// contracts but had not been run green on the final commit when the session ended; they join
// the CI suite when issue 8 lands.
// mod embed;
// mod federated_ui;
// mod offline;
// mod predict_ui;
