//! What the extension, the coordinator and SQL-direct executors must agree on byte for byte:
//! the names of the notification channels and the format of their payloads.
//!
//! The extension (`pg_ext`) derives channels with this crate when it queues a NOTIFY, and the
//! coordinator derives them with the same code when it LISTENs for a parked executor, so the two
//! can never drift apart.
//!
//! A channel name is `ca_<kind>_<32 hex digits>`: 37 ASCII bytes whatever the input, far below
//! PostgreSQL's 63-byte identifier limit, and it needs no quoting. The hex digits are the first
//! 128 bits of SHA-256 over a domain tag and every field length-prefixed, so quotes, unicode, empty
//! strings or 10,000-character names all map to a valid name, and two different keys collide only
//! with probability 2^-128 (never in practice).

use sha2::{Digest, Sha256};
use std::fmt;

/// Length in bytes of every channel name this crate produces.
pub const CHANNEL_LEN: usize = 37;

/// The channel the coordinators LISTEN on for cache invalidation (executor removed, colony
/// removed). It is fixed so every replica can LISTEN before it knows any executor.
pub const CONTROL_CHANNEL: &str = "ca_control";

/// Tells the coordinators that notifications were dropped (the relay's table was full) and they
/// should run their catch-up check now rather than at the next interval.
pub const CATCHUP_CHANNEL: &str = "ca_catchup";

/// A wake-up key: who can take the processes a notification announces.
///
/// DESIGN.md: a process with location L notifies only L's key; a location-less process notifies
/// the broadcast key of its type; a process that names executors notifies each named executor's
/// key. The executor type is part of every key, so a wake never reaches an executor that could
/// not take the work because of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// Untargeted processes pinned to one location.
    Location {
        colony: &'a str,
        executor_type: &'a str,
        location: &'a str,
    },
    /// Untargeted processes with no location: any executor of the type may take them.
    Broadcast {
        colony: &'a str,
        executor_type: &'a str,
    },
    /// Processes whose `executornames` list this executor.
    Name {
        colony: &'a str,
        executor_type: &'a str,
        executor: &'a str,
    },
}

impl<'a> Key<'a> {
    /// The key of untargeted processes at `location`: its location key, or the broadcast key
    /// when there is no location (NULL or empty, as an empty `locationname` means none).
    pub fn untargeted(
        colony: &'a str,
        executor_type: &'a str,
        location: Option<&'a str>,
    ) -> Key<'a> {
        match location.filter(|l| !l.is_empty()) {
            Some(location) => Key::Location {
                colony,
                executor_type,
                location,
            },
            None => Key::Broadcast {
                colony,
                executor_type,
            },
        }
    }

    /// The channel name for this key.
    pub fn channel(&self) -> String {
        let (tag, fields): (u8, [&str; 3]) = match *self {
            Key::Location {
                colony,
                executor_type,
                location,
            } => (b'l', [colony, executor_type, location]),
            Key::Broadcast {
                colony,
                executor_type,
            } => (b'b', [colony, executor_type, ""]),
            Key::Name {
                colony,
                executor_type,
                executor,
            } => (b'n', [colony, executor_type, executor]),
        };
        let mut hasher = Sha256::new();
        hasher.update(b"colony_assign/v1/");
        hasher.update([tag]);
        for field in fields {
            // Length prefixes make the encoding injective: ("ab","c") and ("a","bc") differ.
            hasher.update((field.len() as u64).to_le_bytes());
            hasher.update(field.as_bytes());
        }
        let digest = hasher.finalize();
        let mut name = String::with_capacity(CHANNEL_LEN);
        name.push_str("ca_");
        name.push(tag as char);
        name.push('_');
        for byte in &digest[..16] {
            use fmt::Write;
            let _ = write!(name, "{byte:02x}");
        }
        name
    }
}

/// The keys an executor is woken on: its location key (when it has a location), the broadcast
/// key of its type, and its own name key. Processes outside these keys can never be assigned to
/// it, and every process it can take notifies one of them.
pub fn executor_keys<'a>(
    colony: &'a str,
    executor_type: &'a str,
    location: Option<&'a str>,
    executor: &'a str,
) -> Vec<Key<'a>> {
    let mut keys = Vec::with_capacity(3);
    if let Some(location) = location {
        keys.push(Key::Location {
            colony,
            executor_type,
            location,
        });
    }
    keys.push(Key::Broadcast {
        colony,
        executor_type,
    });
    keys.push(Key::Name {
        colony,
        executor_type,
        executor,
    });
    keys
}

/// Formats a wake payload: how many processes became assignable for the channel's key.
pub fn wake_payload(count: u64) -> String {
    count.to_string()
}

/// Parses a wake payload. Anything that is not a positive count is read as 1: a notification
/// is a hint that at least one process is there, so a malformed payload still wakes one waiter.
pub fn parse_wake_payload(payload: &str) -> u64 {
    payload
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc<'a>(c: &'a str, t: &'a str, l: &'a str) -> Key<'a> {
        Key::Location {
            colony: c,
            executor_type: t,
            location: l,
        }
    }

    #[test]
    fn names_are_fixed_length_identifiers() {
        let long = "x".repeat(10_000);
        let inputs = [
            loc("c", "t", "l"),
            loc("", "", ""),
            loc("\"quoted\"; DROP TABLE x;--", "ümlaut-☃", &long),
            Key::Broadcast {
                colony: &long,
                executor_type: "t",
            },
            Key::Name {
                colony: "c",
                executor_type: "t",
                executor: "e'1",
            },
        ];
        for key in inputs {
            let name = key.channel();
            assert_eq!(name.len(), CHANNEL_LEN, "{name}");
            assert!(name.starts_with("ca_"));
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        assert_ne!(loc("ab", "c", "d").channel(), loc("a", "bc", "d").channel());
        assert_ne!(loc("a", "b", "cd").channel(), loc("a", "bc", "d").channel());
        // A broadcast key is not the location key of the empty location, and kinds never mix.
        let broadcast = Key::Broadcast {
            colony: "a",
            executor_type: "b",
        };
        assert_ne!(broadcast.channel(), loc("a", "b", "").channel());
        let name = Key::Name {
            colony: "a",
            executor_type: "b",
            executor: "c",
        };
        assert_ne!(name.channel(), loc("a", "b", "c").channel());
    }

    #[test]
    fn derivation_is_pinned() {
        // Changing the derivation strands every LISTENing client of an older version, so it
        // may only change on purpose (with a new "v2" domain tag), never by accident.
        assert_eq!(
            loc("prod", "gpu", "edge-1").channel(),
            "ca_l_766cc5bd393ad6fd8f659fa2b271f39a"
        );
        let broadcast = Key::Broadcast {
            colony: "prod",
            executor_type: "gpu",
        };
        assert_eq!(broadcast.channel(), "ca_b_a06a65d60089bfb2838aa569602a4f83");
    }

    #[test]
    fn executor_keys_cover_location_broadcast_and_name() {
        assert_eq!(executor_keys("c", "t", Some("l"), "e").len(), 3);
        let keys = executor_keys("c", "t", None, "e");
        assert_eq!(keys.len(), 2);
        assert!(matches!(keys[0], Key::Broadcast { .. }));
    }

    #[test]
    fn payloads_round_trip_and_degrade_to_one() {
        assert_eq!(parse_wake_payload(&wake_payload(42)), 42);
        assert_eq!(parse_wake_payload("garbage"), 1);
        assert_eq!(parse_wake_payload("0"), 1);
        assert_eq!(parse_wake_payload(""), 1);
    }
}
