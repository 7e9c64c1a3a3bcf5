//! One module per scenario of issue 5 (and the figures issues 2 and 3 ask for).

pub mod batching;
pub mod fanout;
pub mod floor;
pub mod invalidation;
pub mod locality;
pub mod notify_cost;
pub mod parked;
pub mod partition;
pub mod peer;
pub mod scale;
pub mod seed;
pub mod shards;
pub mod soak;
pub mod wakeup;

/// Every scenario, in report order.
pub const ALL: [&str; 14] = [
    "seed",
    "floor",
    "wakeup",
    "notify",
    "batching",
    "scale",
    "soak",
    "peer",
    "parked",
    "locality",
    "partition",
    "invalidation",
    "fanout",
    "shards",
];
