//! What the end-to-end tests (`tests/`, crate `e2e`) and the benchmark harness (`benches/`,
//! `colony-bench`) share, so both drive the system the same way:
//!
//! - connections to a cluster, with their notifications on a channel ([`connect_with`],
//!   [`connect`], [`try_connect`]);
//! - a throwaway database with the extension per test or scenario ([`TestDb`]), and a cluster
//!   of a test's own that it may stop and restart ([`PrivateCluster`]);
//! - real coordinator processes ([`Coordinator`], [`Launch`]) and executors speaking HTTP to
//!   them ([`HttpExecutor`]);
//! - waiting for an observed condition with a deadline ([`eventually`], [`within`]);
//! - reading `/metrics` back ([`metrics_text`]).
//!
//! Nothing here sleeps to order events: a wait polls a condition until a deadline.

mod cluster;
mod coordinator;
mod database;
mod executor;
pub mod metrics_text;
mod pg;
mod poll;

pub use cluster::PrivateCluster;
pub use coordinator::{Coordinator, Launch};
pub use database::{Listener, TestDb, drop_database, recreate_database};
pub use executor::{HttpExecutor, Poll, ids};
pub use pg::{cluster_config, connect, connect_listening, connect_with, conninfo, try_connect};
pub use poll::{eventually, within};

use std::time::Duration;

/// How long any wait may take before it counts as a failure. Generous because the machine is
/// shared; nothing ever waits this long when the code is right.
pub const DEADLINE: Duration = Duration::from_secs(30);
