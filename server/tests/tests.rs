//! The server's integration tests: one binary, one module per area.

mod access;
mod accounts;
mod client;
mod federation;
mod inference;
mod jobs;
mod simulate;
mod support;
