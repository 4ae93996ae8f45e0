//! The Tongban gateway: a mutual-TLS proxy that answers record lookups between
//! government departments, allowed by sharing agreements, signed, and audited before
//! the answer leaves.
//!
//! `main.rs` only wires; everything here can be driven from tests.

pub mod agreements;
pub mod app;
pub mod audit_config;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod demo_browser;
pub mod demo_department;
pub mod error;
pub mod http;
pub mod metrics;
mod parser_refusal;
pub mod plain_http;
pub mod policy_sync;
pub mod requests;
pub mod resilience;
pub mod server;
pub mod shares;
pub mod sources;
pub mod start_error;
pub mod telemetry;
pub mod tls;
pub mod witness_server;
pub mod witness_submit;

/// Install the ring provider as rustls' process default (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
