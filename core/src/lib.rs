//! medrec's core: the domain and its use cases (records, consent, audit,
//! documents, the registry exchange, retention), the ports they need from
//! storage and keys, and the crypto that protects PHI.
//!
//! Owns: every decision medrec makes about a request or a record. Must
//! never import the AWS SDK, Lambda or HTTP server crates: its Cargo.toml
//! lists none of them, so the compiler refuses an adapter's type here. The
//! adapters (`medrec-aws`) and the edge (`medrec-edge`) implement or call what
//! this crate declares.

/// FHIR R4 itself (`medrec-fhir`), reached as `fhir` as everywhere else.
pub use medrec_fhir as fhir;

pub mod audit;
pub mod auth;
pub mod consent;
pub mod consumer;
pub mod crypto;
pub mod cursor;
pub mod documents;
pub mod error;
pub mod events;
pub mod evidence;
pub mod limits;
#[cfg(feature = "memory-ports")]
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod purge;
pub mod registry;
pub mod retention;
pub mod service;
