//! Everything that runs or operates medrec but is not a Lambda: the local
//! stack (emulator, provisioning from template.yaml, local API gateway) and
//! the pieces of the `medrec` operator CLI.

pub mod audit_verify;
pub mod client;
pub mod compliance;
pub mod devkey;
pub mod emulator;
pub mod events;
pub mod fault_proxy;
pub mod fhir_model;
pub mod gateway;
pub mod idle;
pub mod metrics;
pub mod poller;
pub mod provision;
pub mod purge;
pub mod registry_sim;
pub mod resource_table;
pub mod runtime_api;
pub mod seed;
pub mod stack;
pub mod stream_poller;
pub mod template;
pub mod validate_files;
