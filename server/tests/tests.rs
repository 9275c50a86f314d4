//! The server's integration tests: one binary, one module per area.

mod access;
mod accounts;
mod federation;
mod inference;
