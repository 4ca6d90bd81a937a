//! medrec's shared library: the FHIR domain, crypto, identity, audit and the
//! ports every function uses, with their AWS adapters beside them.

pub mod api;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod cursor;
pub mod documents;
pub mod error;
pub mod events;
/// FHIR R4 itself lives in its own crate, which knows nothing of AWS, HTTP
/// or medrec's policies; the rest of `shared` reaches it as `fhir`.
pub use medrec_fhir as fhir;
pub mod http;
pub mod lambda;
pub mod log;
#[cfg(feature = "memory-ports")]
pub mod memory;
pub mod outbound;
pub mod ports;
pub mod registry;
pub mod rest;
pub mod retention;
pub mod runtime;
pub mod service;
