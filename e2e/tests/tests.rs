//! Real-browser tests: each starts its own `b3o serve` and headless Chromium.

mod accounts_ui;
mod app_shell;
