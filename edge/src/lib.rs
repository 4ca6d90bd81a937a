//! medrec's Lambda/HTTP edge: routing, authentication, the REST and Bundle
//! handling every API function serves, errors mapped once to
//! OperationOutcome, configuration and cold-start wiring (`runtime`), and
//! outbound HTTPS (JWKS, the registry client).
//!
//! Owns: what a request or an event looks like at the boundary and how a
//! function is built. Must never decide what a use case decides (that is
//! `medrec-core`) nor hold an item layout or an SDK call sequence (that is
//! `medrec-aws`). The core's, FHIR's and the adapters' modules are
//! re-exported under their own names, so a function names everything as
//! `medrec_edge::...`; the compiler keeps each crate free of the ones
//! above it.

#[cfg(feature = "memory-ports")]
pub use medrec_core::memory;
pub use medrec_core::{
    audit, auth, consent, consumer, crypto, cursor, documents, error, events, evidence, fhir, metrics, ports, purge,
    retention, service,
};

pub use medrec_aws as aws;

pub mod api;
pub mod config;
pub mod emf;
pub mod http;
pub mod lambda;
pub mod log;
pub mod outbound;
pub mod registry;
pub mod rest;
pub mod routing;
pub mod runtime;
pub mod scheduled;
