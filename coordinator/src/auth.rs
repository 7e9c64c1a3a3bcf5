//! Bearer tokens: `Authorization: Bearer <token>`, an executor's token from `add_executor()` or
//! an admin's from `add_admin()`, checked against the hash the extension stores, with a small
//! cache so a long-polling executor does not cost a query per poll. The cache follows the
//! notifier's control events: removals drop entries at once, and the TTL only bounds a missed
//! event.

use crate::db::{Db, Executor};
use crate::error::{Error, Result};
use crate::notifier::{ControlEvent, ControlEvents};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Beyond this many cached tokens the cache starts over rather than grow without bound.
const MAX_ENTRIES: usize = 100_000;

/// What `add_admin()` puts before an admin token (sql/identity.sql); executor tokens start with
/// `cat_`. The prefix picks the one lookup a token needs, so an executor's poll never costs an
/// admin lookup (and a flood of bad tokens costs one query each, not two).
pub const ADMIN_TOKEN_PREFIX: &str = "caa_";

/// An admin as its bearer token identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    /// The colonies the token reaches; None = every colony.
    pub colonies: Option<Vec<String>>,
}

impl Admin {
    pub fn reaches(&self, colony: &str) -> bool {
        self.colonies
            .as_ref()
            .is_none_or(|colonies| colonies.iter().any(|c| c == colony))
    }
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Executor(Executor),
    Admin(Admin),
}

impl Principal {
    /// Whether the token may see `colony`'s objects: an executor its own colony, an admin the
    /// colonies its token reaches.
    pub fn reaches(&self, colony: &str) -> bool {
        match self {
            Principal::Executor(executor) => executor.colony == colony,
            Principal::Admin(admin) => admin.reaches(colony),
        }
    }
}

pub struct TokenCache {
    // Keyed by the token's SHA-256, so raw tokens are not kept in memory.
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    ttl: Duration,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Principal, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Principal> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((principal, at)) = self.entries().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(principal.clone());
        }
        let found = if token.starts_with(ADMIN_TOKEN_PREFIX) {
            db.authenticate_admin(token).await?.map(Principal::Admin)
        } else {
            db.authenticate(token).await?.map(Principal::Executor)
        };
        // Unknown tokens are not cached: a flood of bad tokens must not fill memory.
        let principal = found.ok_or(Error::Unauthorized("unknown bearer token"))?;
        self.remember(key, principal.clone());
        Ok(principal)
    }

    fn remember(&self, key: [u8; 32], principal: Principal) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (principal, Instant::now()));
    }

    /// For in-process tests: trust `token` as `principal` without asking a database.
    #[cfg(test)]
    pub(crate) fn insert(&self, token: &str, principal: Principal) {
        self.remember(Sha256::digest(token.as_bytes()).into(), principal);
    }

    /// Subscribes the cache to control events, so it forgets what each of them voids.
    pub fn follow(self: &Arc<Self>, events: &mut ControlEvents) {
        let cache = self.clone();
        events.subscribe(move |event| cache.forget(event));
    }

    fn forget(&self, event: &ControlEvent) {
        let mut entries = self.entries();
        match event {
            // Which removals were missed is unknown, so every entry is suspect.
            ControlEvent::MissedWhileDisconnected => entries.clear(),
            removal => entries.retain(|_, (principal, _)| match principal {
                Principal::Executor(executor) => !removal.removes(executor),
                Principal::Admin(admin) => !removal.removes_admin(&admin.name),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor(colony: &str, name: &str) -> Principal {
        Principal::Executor(Executor {
            colony: colony.into(),
            name: name.into(),
            executor_type: "t".into(),
            location: None,
        })
    }

    fn admin(name: &str) -> Principal {
        Principal::Admin(Admin {
            name: name.into(),
            colonies: None,
        })
    }

    fn cache_of(principals: &[Principal]) -> TokenCache {
        let cache = TokenCache::new(Duration::from_secs(60));
        for (index, principal) in principals.iter().enumerate() {
            cache.remember([index as u8; 32], principal.clone());
        }
        cache
    }

    fn cached(cache: &TokenCache) -> Vec<String> {
        let mut cached: Vec<String> = cache
            .entries()
            .values()
            .map(|(p, _)| match p {
                Principal::Executor(e) => format!("{}/{}", e.colony, e.name),
                Principal::Admin(a) => format!("admin {}", a.name),
            })
            .collect();
        cached.sort();
        cached
    }

    #[test]
    fn published_control_events_drop_the_tokens_they_void() {
        let cache = Arc::new(cache_of(&[
            executor("c", "e"),
            executor("c", "f"),
            executor("d", "e"),
            executor("d", "f"),
            admin("root"),
            admin("ops"),
        ]));
        let mut events = ControlEvents::default();
        cache.follow(&mut events);

        events.publish(&ControlEvent::ExecutorRemoved {
            colony: "c".into(),
            executor: "e".into(),
        });
        assert_eq!(
            cached(&cache),
            ["admin ops", "admin root", "c/f", "d/e", "d/f"]
        );
        events.publish(&ControlEvent::ColonyRemoved { colony: "d".into() });
        assert_eq!(cached(&cache), ["admin ops", "admin root", "c/f"]);
        // An admin's removal voids its token only; an executor of the same name is another.
        events.publish(&ControlEvent::AdminRemoved {
            admin: "root".into(),
        });
        assert_eq!(cached(&cache), ["admin ops", "c/f"]);
        events.publish(&ControlEvent::MissedWhileDisconnected);
        assert!(cached(&cache).is_empty());
    }

    #[test]
    fn scoped_admins_reach_only_their_colonies() {
        let scoped = Principal::Admin(Admin {
            name: "a".into(),
            colonies: Some(vec!["c".into(), "d".into()]),
        });
        assert!(scoped.reaches("c") && scoped.reaches("d"));
        assert!(!scoped.reaches("e") && !scoped.reaches(""));
        assert!(admin("root").reaches("anything"));
        assert!(executor("c", "e").reaches("c"));
        assert!(!executor("c", "e").reaches("d"));
    }
}
