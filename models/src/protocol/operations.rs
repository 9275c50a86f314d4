//! Wire types: operations (see the module docs of `models::protocol`).
