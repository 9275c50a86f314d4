//! B3O Edge's client engine. Compiled to wasm32 it is the in-browser ML engine and federated
//! learning client; compiled natively it backs `b3o client` and `b3o simulate`.
//!
//! Only weight updates and mergeable column summaries ever leave a client: never rows.
//! Only this crate (and `app`) knows wasm-bindgen.

pub mod capabilities;
pub mod inference;
