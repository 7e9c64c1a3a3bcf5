//! Bearer tokens: `Authorization: Bearer <token>` from `add_executor()`, checked against the hash
//! the extension stores, with a small cache so a long-polling executor does not cost a query
//! per poll. Removals are pushed by the notifier (control channel) and drop entries at once;
//! the TTL only bounds a missed push.

use crate::db::{Db, Executor};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
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

    pub fn forget_executor(&self, colony: &str, name: &str) {
        self.entries()
            .retain(|_, (e, _)| !(e.colony == colony && e.name == name));
    }

    pub fn forget_colony(&self, colony: &str) {
        self.entries().retain(|_, (e, _)| e.colony != colony);
    }

    pub fn clear(&self) {
        self.entries().clear();
    }
}
