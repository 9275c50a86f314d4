//! B3O Edge's ML core: one implementation of every model, its preprocessing, local training,
//! the weight/update wire format and the ONNX export, shared by the browser, the native client,
//! the simulator and the server.
//!
//! It knows nothing of HTTP, databases or the DOM, and compiles for native and
//! `wasm32-unknown-unknown`.
