//! Command-line subcommands of `b3o` besides `serve`: [`client`] takes part in a federated
//! group over HTTP. (`b3o simulate` is [`crate::simulate`].)

pub mod client;
