//! Wire types: history (see the module docs of `models::protocol`).
