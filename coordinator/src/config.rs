//! Configuration: every setting is a flag and an environment variable (`COLONY_*`).

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(name = "colony-coordinator", version, about)]
pub struct Config {
    /// PostgreSQL connection string (URL or key=value) of the database with the colony_assign
    /// extension. The LISTEN connection uses it too, so it must not go through a
    /// transaction-pooling PgBouncer (LISTEN does not survive transaction pooling).
    #[arg(long, env = "COLONY_DATABASE_URL")]
    pub database_url: String,

    /// Address the HTTP API listens on.
    #[arg(long, env = "COLONY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Name of this replica in logs and metrics (defaults to the listen address).
    #[arg(long, env = "COLONY_REPLICA")]
    pub replica: Option<String>,

    /// Query connections (assign, close, submit, ...). Parked long-polls hold none, so this
    /// stays small however many executors wait; it bounds concurrent database calls.
    #[arg(long, env = "COLONY_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// How long a request waits for a free query connection, or a new one to open, before it
    /// fails with 503. Keeps requests failing fast while the database is unreachable.
    #[arg(long, env = "COLONY_POOL_TIMEOUT_MS", default_value_t = 2000)]
    pub pool_timeout_ms: u64,

    /// Coalesced assign (and close) calls in flight at once: long-polls that want work while
    /// these run wait and go out together in the next call (see docs/coordinator.md).
    #[arg(long, env = "COLONY_BATCH_IN_FLIGHT", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_in_flight: u16,

    /// Most requests coalesced into one assign (or close) call.
    #[arg(long, env = "COLONY_BATCH_MAX", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_max: u16,

    /// Longest long-poll a client may ask for (`?timeout=` in seconds, 0..=this). Keep it below
    /// the idle timeout of any proxy in front of the coordinator.
    #[arg(long, env = "COLONY_MAX_TIMEOUT_S", default_value_t = 60)]
    pub max_timeout_s: u64,

    /// Long-poll timeout used when a request gives none, in seconds.
    #[arg(long, env = "COLONY_DEFAULT_TIMEOUT_S", default_value_t = 30)]
    pub default_timeout_s: u64,

    /// Most long-polls one executor (one token) may have parked on this replica at once; one
    /// more is answered 429 Too Many Requests at once. Bounds the memory and sockets a single
    /// executor can hold; other executors are not affected. Executors that poll with several
    /// slots in parallel need at least that many.
    #[arg(long, env = "COLONY_MAX_PARKED_PER_EXECUTOR", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parked_per_executor: u32,

    /// How long a client may take to send a request's line and headers, in milliseconds, from
    /// the moment the server starts reading them (a new connection, or a keep-alive connection
    /// waiting for its next request). A client that has not finished by then is disconnected
    /// (slow-loris); so is a keep-alive connection idle that long. A parked long-poll is not
    /// affected: its headers were read long before.
    #[arg(long, env = "COLONY_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// How long a request's body may take to arrive in full, in milliseconds, from the moment
    /// the handler starts reading it; a body still incomplete then (sent slowly, or trickled
    /// byte by byte) gets 408 and the connection is closed. Long-polls never read their body,
    /// so waiting up to `--max-timeout-s` is not cut by this.
    #[arg(long, env = "COLONY_BODY_READ_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,

    /// Largest request body in bytes; larger ones get 413. Specs themselves are limited to
    /// 256 KiB each by the extension.
    #[arg(long, env = "COLONY_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How often the notifier checks, for every key with parked executors, whether work is
    /// waiting that no notification announced (a notification lost to a reconnect or a race).
    /// This bounds the extra latency of a lost notification.
    #[arg(long, env = "COLONY_CATCHUP_INTERVAL_MS", default_value_t = 1000)]
    pub catchup_interval_ms: u64,

    /// If the LISTEN connection has been silent this long, the notifier pings it; a ping that
    /// does not answer within the same time counts as a dead connection. Detects a silently
    /// dropped link within twice this (1.5 s by default).
    #[arg(long, env = "COLONY_LISTEN_PING_MS", default_value_t = 750)]
    pub listen_ping_ms: u64,

    /// A channel nobody has waited on for this long is UNLISTENed. Long enough that executors
    /// polling in a loop do not cause a LISTEN/UNLISTEN per poll.
    #[arg(long, env = "COLONY_UNLISTEN_AFTER_S", default_value_t = 60)]
    pub unlisten_after_s: u64,

    /// How long an authenticated token is trusted without asking the database again. Removals
    /// are pushed to every replica at once; this only bounds a missed push.
    #[arg(long, env = "COLONY_TOKEN_CACHE_S", default_value_t = 60)]
    pub token_cache_s: u64,

    /// Whether this replica runs colony_assign.reap() (deadlines, stale executors, retention):
    /// `auto` only while the database has no background reaper (the extension is not in
    /// shared_preload_libraries), `always`, or `off`. reap() is compare-and-set, so any number
    /// of replicas may run it together.
    #[arg(long, env = "COLONY_REAP", value_enum, default_value_t = ReapMode::Auto)]
    pub reap: ReapMode,

    /// Milliseconds between this replica's reap() passes.
    #[arg(long, env = "COLONY_REAP_INTERVAL_MS", default_value_t = 1000)]
    pub reap_interval_ms: u64,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "COLONY_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReapMode {
    Auto,
    Always,
    Off,
}

impl Config {
    pub fn replica_name(&self) -> String {
        self.replica
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_timeout_ms)
    }
    pub fn catchup_interval(&self) -> Duration {
        Duration::from_millis(self.catchup_interval_ms.max(10))
    }
    pub fn listen_ping(&self) -> Duration {
        Duration::from_millis(self.listen_ping_ms.max(10))
    }
    pub fn unlisten_after(&self) -> Duration {
        Duration::from_secs(self.unlisten_after_s)
    }
    pub fn reap_interval(&self) -> Duration {
        Duration::from_millis(self.reap_interval_ms.max(10))
    }
    pub fn token_cache(&self) -> Duration {
        Duration::from_secs(self.token_cache_s)
    }
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}
