//! Wire types: accounts (see the module docs of `models::protocol`).
