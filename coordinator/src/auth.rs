//! Bearer tokens: `Authorization: Bearer <token>` from `add_executor()`, checked against the hash
//! the extension stores, with a small cache so a long-polling executor does not cost a query
//! per poll. The cache follows the notifier's control events: removals drop entries at once,
//! and the TTL only bounds a missed event.

use crate::db::{Db, Executor};
use crate::error::{Error, Result};
use crate::notifier::{ControlEvent, ControlEvents};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Beyond this many cached tokens the cache starts over rather than grow without bound.
const MAX_ENTRIES: usize = 100_000;

pub struct TokenCache {
    // Keyed by the token's SHA-256, so raw tokens are not kept in memory.
    entries: Mutex<HashMap<[u8; 32], (Executor, Instant)>>,
    ttl: Duration,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Executor, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Executor> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((executor, at)) = self.entries().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(executor.clone());
        }
        // Unknown tokens are not cached: a flood of bad tokens must not fill memory.
        let executor = db
            .authenticate(token)
            .await?
            .ok_or(Error::Unauthorized("unknown bearer token"))?;
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (executor.clone(), Instant::now()));
        Ok(executor)
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
            removal => entries.retain(|_, (executor, _)| !removal.removes(executor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_of(executors: &[(&str, &str)]) -> TokenCache {
        let cache = TokenCache::new(Duration::from_secs(60));
        for (index, (colony, name)) in executors.iter().enumerate() {
            let executor = Executor {
                colony: (*colony).into(),
                name: (*name).into(),
                executor_type: "t".into(),
                location: None,
            };
            cache
                .entries()
                .insert([index as u8; 32], (executor, Instant::now()));
        }
        cache
    }

    fn cached(cache: &TokenCache) -> Vec<(String, String)> {
        let mut cached: Vec<(String, String)> = cache
            .entries()
            .values()
            .map(|(e, _)| (e.colony.clone(), e.name.clone()))
            .collect();
        cached.sort();
        cached
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
            .collect()
    }

    #[test]
    fn published_control_events_drop_the_tokens_they_void() {
        let cache = Arc::new(cache_of(&[("c", "e"), ("c", "f"), ("d", "e"), ("d", "f")]));
        let mut events = ControlEvents::default();
        cache.follow(&mut events);

        events.publish(&ControlEvent::ExecutorRemoved {
            colony: "c".into(),
            executor: "e".into(),
        });
        assert_eq!(cached(&cache), pairs(&[("c", "f"), ("d", "e"), ("d", "f")]));
        events.publish(&ControlEvent::ColonyRemoved { colony: "d".into() });
        assert_eq!(cached(&cache), pairs(&[("c", "f")]));
        events.publish(&ControlEvent::MissedWhileDisconnected);
        assert_eq!(cached(&cache), pairs(&[]));
    }
}
