//! Wake keys: what a parked executor listens on. The channel names come from `colony-proto`,
//! the same code the extension notifies with, so the two sides cannot drift apart.

use crate::db::Executor;
use colony_proto::{Key, executor_keys};

/// A wake-up key with the attributes it stands for (the channel name alone is a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeKey {
    pub channel: String,
    pub colony: String,
    pub executor_type: String,
    /// Location of a location key; for a name key, the named executor's location.
    pub location: Option<String>,
    /// Set for name keys only.
    pub executor: Option<String>,
}

impl WakeKey {
    /// The keys an executor is woken on (DESIGN.md, Notifications).
    pub fn for_executor(e: &Executor) -> Vec<WakeKey> {
        executor_keys(&e.colony, &e.executor_type, e.location.as_deref(), &e.name)
            .into_iter()
            .map(|key| {
                let (location, executor) = match key {
                    Key::Location { location, .. } => (Some(location.to_owned()), None),
                    Key::Broadcast { .. } => (None, None),
                    Key::Name { executor, .. } => (e.location.clone(), Some(executor.to_owned())),
                };
                WakeKey {
                    channel: key.channel(),
                    colony: e.colony.clone(),
                    executor_type: e.executor_type.clone(),
                    location,
                    executor,
                }
            })
            .collect()
    }

    /// The key's kind as metrics label it: `location`, `broadcast` or `name`.
    pub fn kind(&self) -> &'static str {
        match (&self.executor, &self.location) {
            (Some(_), _) => "name",
            (None, Some(_)) => "location",
            (None, None) => "broadcast",
        }
    }

    /// Whether an executor could take the work this key announces: what a wake must never get
    /// wrong (the seed's wrong-location wake-ups). Checked on every wake and counted.
    pub fn admits(&self, e: &Executor) -> bool {
        self.colony == e.colony
            && self.executor_type == e.executor_type
            && match (&self.executor, &self.location) {
                (Some(name), _) => *name == e.name,
                (None, Some(location)) => e.location.as_ref() == Some(location),
                (None, None) => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor(location: Option<&str>) -> Executor {
        Executor {
            colony: "c".into(),
            name: "e".into(),
            executor_type: "t".into(),
            location: location.map(Into::into),
        }
    }

    #[test]
    fn keys_admit_exactly_the_executors_that_could_take_the_work() {
        let at_a = executor(Some("A"));
        let keys = WakeKey::for_executor(&at_a);
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.admits(&at_a)));
        let location_key = &keys[0];
        assert_eq!(location_key.kind(), "location");
        assert!(!location_key.admits(&executor(Some("B"))));
        assert!(!location_key.admits(&executor(None)));
        let broadcast = &keys[1];
        assert!(broadcast.admits(&executor(None)));
        let mut other_type = executor(Some("A"));
        other_type.executor_type = "u".into();
        assert!(!broadcast.admits(&other_type));
        let mut other_name = executor(Some("A"));
        other_name.name = "f".into();
        assert!(!keys[2].admits(&other_name));
    }
}
