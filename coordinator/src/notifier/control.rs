//! Control events: what the `ca_control` channel announces (an executor, a whole colony or an
//! admin token was removed), published to the parts of this replica that hold what such an event
//! voids.

use crate::db::Executor;
use serde::Deserialize;

/// Something that voids what this replica learnt about executors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ControlEvent {
    /// `remove_executor()`: its tokens are void and its parked long-polls must answer.
    ExecutorRemoved { colony: String, executor: String },
    /// `remove_colony()`: the same for every executor of the colony.
    ColonyRemoved { colony: String },
    /// `remove_admin()`: the admin's token is void.
    AdminRemoved { admin: String },
    /// The LISTEN connection was down, or this replica dropped notifications because its queue
    /// was full, so removals may have passed unseen: anything learnt from the database before
    /// is suspect.
    #[serde(skip)]
    MissedWhileDisconnected,
}

impl ControlEvent {
    /// Whether the event removed `e`. A gap in the events removed no one known.
    pub fn removes(&self, e: &Executor) -> bool {
        match self {
            ControlEvent::ExecutorRemoved { colony, executor } => {
                e.colony == *colony && e.name == *executor
            }
            ControlEvent::ColonyRemoved { colony } => e.colony == *colony,
            ControlEvent::AdminRemoved { .. } | ControlEvent::MissedWhileDisconnected => false,
        }
    }

    /// Whether the event removed the admin named `admin`. (Removing a colony leaves the admin
    /// tokens that name it: they reach it again if it is re-created.)
    pub fn removes_admin(&self, admin: &str) -> bool {
        matches!(self, ControlEvent::AdminRemoved { admin: removed } if removed == admin)
    }
}

type Subscriber = Box<dyn Fn(&ControlEvent) + Send + Sync>;

/// The subscribers to control events. Each event reaches them in subscription order, on the
/// LISTEN task, before the removed executors' parked long-polls are told: an executor that
/// polls again after its 401 must find its token already forgotten, which a queue between the
/// notifier and the subscribers could not promise.
#[derive(Default)]
pub struct ControlEvents {
    subscribers: Vec<Subscriber>,
}

impl ControlEvents {
    pub fn subscribe(&mut self, subscriber: impl Fn(&ControlEvent) + Send + Sync + 'static) {
        self.subscribers.push(Box::new(subscriber));
    }

    pub(crate) fn publish(&self, event: &ControlEvent) {
        for subscriber in &self.subscribers {
            subscriber(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn executor(colony: &str, name: &str) -> Executor {
        Executor {
            colony: colony.into(),
            name: name.into(),
            executor_type: "t".into(),
            location: None,
        }
    }

    #[test]
    fn payloads_parse_as_the_extension_sends_them() {
        // As built by jsonb_build_object in remove_executor() and remove_colony().
        let executor_removed: ControlEvent = serde_json::from_str(
            r#"{"event": "executor_removed", "colony": "c", "executor": "e"}"#,
        )
        .unwrap();
        assert_eq!(
            executor_removed,
            ControlEvent::ExecutorRemoved {
                colony: "c".into(),
                executor: "e".into()
            }
        );
        let colony_removed: ControlEvent =
            serde_json::from_str(r#"{"event": "colony_removed", "colony": "c"}"#).unwrap();
        assert_eq!(
            colony_removed,
            ControlEvent::ColonyRemoved { colony: "c".into() }
        );
        // As built by remove_admin().
        let admin_removed: ControlEvent =
            serde_json::from_str(r#"{"event": "admin_removed", "admin": "root"}"#).unwrap();
        assert_eq!(
            admin_removed,
            ControlEvent::AdminRemoved {
                admin: "root".into()
            }
        );
        for unknown in [
            r#"{"event": "colony_renamed", "colony": "c"}"#,
            r#"{"event": "missed_while_disconnected"}"#,
            r#"{"colony": "c"}"#,
            "not json",
        ] {
            assert!(
                serde_json::from_str::<ControlEvent>(unknown).is_err(),
                "{unknown}"
            );
        }
    }

    #[test]
    fn events_remove_exactly_their_executors() {
        let executor_removed = ControlEvent::ExecutorRemoved {
            colony: "c".into(),
            executor: "e".into(),
        };
        assert!(executor_removed.removes(&executor("c", "e")));
        assert!(!executor_removed.removes(&executor("c", "f")));
        assert!(!executor_removed.removes(&executor("d", "e")));
        let colony_removed = ControlEvent::ColonyRemoved { colony: "c".into() };
        assert!(colony_removed.removes(&executor("c", "f")));
        assert!(!colony_removed.removes(&executor("d", "e")));
        assert!(!ControlEvent::MissedWhileDisconnected.removes(&executor("c", "e")));
        let admin_removed = ControlEvent::AdminRemoved { admin: "e".into() };
        assert!(!admin_removed.removes(&executor("c", "e")));
        assert!(admin_removed.removes_admin("e"));
        assert!(!admin_removed.removes_admin("f"));
        assert!(!executor_removed.removes_admin("e"));
        assert!(!colony_removed.removes_admin("c"));
    }

    #[test]
    fn every_subscriber_gets_every_event_in_subscription_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut events = ControlEvents::default();
        for subscriber in ["first", "second"] {
            let seen = seen.clone();
            events.subscribe(move |event| seen.lock().unwrap().push((subscriber, event.clone())));
        }
        let removed = ControlEvent::ColonyRemoved { colony: "c".into() };
        events.publish(&removed);
        events.publish(&ControlEvent::MissedWhileDisconnected);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                ("first", removed.clone()),
                ("second", removed),
                ("first", ControlEvent::MissedWhileDisconnected),
                ("second", ControlEvent::MissedWhileDisconnected),
            ]
        );
    }
}
