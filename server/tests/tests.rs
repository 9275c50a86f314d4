//! The server's integration tests: one binary, one module per area.
