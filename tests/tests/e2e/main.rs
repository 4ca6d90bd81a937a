//! Every end-to-end suite, one module per concern, in one test binary.
//! Thirty binaries each linked the whole stack (about 72 MB apiece) and
//! compiled their own copies of its generic code; nextest still runs each
//! test in its own process, against its own emulator.

mod access_anomalies;
mod audit_search;
mod audit_trail;
mod authz_matrix;
mod background_faults;
mod bundles;
mod client_libraries;
mod clinical_records;
mod cohort;
mod compliance;
mod compliance_live;
mod consent_attacks;
mod consent_enforcement;
mod contract;
mod documents;
mod events;
mod faults;
mod identity;
mod key_rewrap;
mod malformed_input;
mod metrics;
mod patient_crud;
mod patient_search;
mod phi_canaries;
mod phi_protection;
mod record_types;
mod registry;
mod registry_sync;
mod retention;
mod sample_events;
mod search_results;
mod template_security;
mod validate_operation;
mod wire_fidelity;
