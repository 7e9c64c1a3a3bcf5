//! Idempotent submits: a submit that carries a key (SQL argument `idempotency_key`, HTTP header
//! `Idempotency-Key`) and is retried — because the client saw an error although the commit may
//! have happened, as around a database failover — returns the first call's ids instead of
//! creating the processes again.
//!
//! The key is claimed before anything is inserted (a row in `idempotency_keys` under its
//! primary key): a concurrent retry waits on that row's uniqueness check until the first call
//! commits or rolls back, then sees its ids, or claims the key itself. The request is
//! fingerprinted (SHA-256 of the colony and the specs as PostgreSQL normalized them), so the
//! same key with a different request is refused (22023) rather than silently answered with
//! another request's ids. Keys are kept for the colony's retention (the reaper deletes them).

use crate::error::ExtError;
use crate::members::valid_name;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};

/// What a submit with a key must do.
pub enum Claim {
    /// The key is new: insert, then record the ids with [`record`].
    New,
    /// A committed earlier call with this key made these ids: return them.
    Done(Vec<i64>),
}

/// Claims `key` for this submit of `fingerprint_text` into `colony`.
pub fn claim(colony: &str, key: &str, fingerprint_text: &str) -> Claim {
    let key = valid_name(Some(key), "idempotency_key").unwrap_or_else(|e| e.raise());
    let fingerprint = Sha256::new()
        .chain_update((colony.len() as u64).to_le_bytes())
        .chain_update(colony.as_bytes())
        .chain_update(fingerprint_text.as_bytes())
        .finalize()
        .to_vec();
    crate::spi::pinned(|| {
        Spi::connect_mut(|client| {
            let inserted = client
                .update(
                    include_str!("queries/idempotency_claim.sql"),
                    None,
                    &[colony.into(), key.into(), fingerprint.as_slice().into()],
                )?
                .len();
            if inserted == 1 {
                return Ok(Claim::New);
            }
            let row = client
                .select(
                    include_str!("queries/idempotency_get.sql"),
                    Some(1),
                    &[colony.into(), key.into()],
                )?
                .first();
            let stored: Option<Vec<u8>> = row.get(1)?;
            if stored.as_deref() != Some(fingerprint.as_slice()) {
                ExtError::InvalidValue(format!(
                    "idempotency key {} was used for a different request",
                    crate::members::quoted(key)
                ))
                .raise();
            }
            Ok::<_, pgrx::spi::Error>(Claim::Done(row.get::<Vec<i64>>(2)?.unwrap_or_default()))
        })
    })
    .unwrap_or_else(|e| ExtError::Internal(format!("idempotency key lookup failed: {e}")).raise())
}

/// Records the ids a claimed key's submit made (same transaction: both commit or neither).
pub fn record(colony: &str, key: &str, ids: &[i64]) {
    crate::spi::pinned(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    include_str!("queries/idempotency_record.sql"),
                    None,
                    &[colony.into(), key.into(), ids.to_vec().into()],
                )
                .map(|_| ())
        })
    })
    .unwrap_or_else(|e| {
        ExtError::Internal(format!("recording an idempotency key failed: {e}")).raise()
    })
}
