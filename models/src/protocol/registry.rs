//! Wire types: registry (see the module docs of `models::protocol`).
