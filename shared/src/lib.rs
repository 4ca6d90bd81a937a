//! medrec's AWS adapters and Lambda/HTTP edge: the ports of `medrec-core`
//! implemented over DynamoDB, KMS, S3 and EventBridge, the REST edge every
//! API function serves, configuration and cold-start wiring.
//!
//! The core's and FHIR's modules are re-exported under their own names, so
//! a function names everything as `medrec_shared::...`; the compiler keeps
//! them free of this crate's dependencies.

#[cfg(feature = "memory-ports")]
pub use medrec_core::memory;
pub use medrec_core::{
    audit, auth, consent, consumer, crypto, cursor, documents, error, events, fhir, ports, purge, retention, service,
};

pub mod api;
pub mod aws;
pub mod config;
pub mod http;
pub mod lambda;
pub mod log;
pub mod outbound;
pub mod registry;
pub mod rest;
pub mod runtime;
