//! Wire types: jobs (see the module docs of `models::protocol`).
