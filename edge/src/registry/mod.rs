//! The registry exchange of `medrec-core`, with its adapters: the HTTPS
//! client that speaks to the registry and its configuration.

pub use medrec_core::registry::*;

pub mod client;
pub mod setup;
