//! Real-browser tests: each starts its own `b3o serve` and headless Chromium.

mod accounts_ui;
mod app_shell;
mod embed;
mod federated_ui;
mod first_load;
mod kept_ui;
mod monitoring_ui;
mod offline;
mod owner_controls;
mod predict_ui;
mod privacy_ui;
mod replicas_ui;
mod secure_ui;
mod visitor_ui;
