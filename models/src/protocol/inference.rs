//! Wire types: inference (see the module docs of `models::protocol`).
