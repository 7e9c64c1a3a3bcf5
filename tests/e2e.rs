//! End-to-end tests. Each module owns its databases; see lib.rs for the harness.

mod client;
mod coordinator;
mod extension;
mod ha;
