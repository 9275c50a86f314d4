//! The server's integration tests: one binary, one module per area.

mod access;
mod accounts;
mod blob_store;
mod buffered;
mod client;
mod compression;
mod federation;
mod gate;
mod grpc;
mod hardening_accounts;
mod hardening_federation;
mod hardening_inference;
mod hardening_jobs;
mod inference;
mod jobs;
mod malformed_corpus;
mod module_graph;
mod openapi;
mod operations;
mod privacy;
mod replicas;
mod secagg;
mod simulate;
mod support;
mod test_db;
mod under_attack;
