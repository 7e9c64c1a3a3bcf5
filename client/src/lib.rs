//! HTTP client for colony_assign coordinators, for submitters and executors, with failover
//! between replicas.
//!
//! ```no_run
//! # async fn run() -> colony_client::Result<()> {
//! use colony_client::{Client, Url};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! let replicas = vec![
//!     Url::parse("http://10.0.0.1:8080").unwrap(),
//!     Url::parse("http://10.0.0.2:8080").unwrap(),
//! ];
//! let client = Client::new(replicas, "executor token")?;
//! let id = client
//!     .submit("c", &json!({"funcname": "add", "args": [1, 2], "conditions": {"executortype": "t"}}))
//!     .await?;
//! for process in client.assign("c", Duration::from_secs(30), 10).await? {
//!     client.close(process.id, Some(json!(3))).await?;
//! }
//! # let _ = id;
//! # Ok(())
//! # }
//! ```
//!
//! Every `/v1` route takes `Authorization: Bearer <token>`, a token from
//! `colony_assign.add_executor()`; requests act as that executor, in its colony only (submitting
//! too). docs/protocol.md describes the wire protocol for clients in other languages; this
//! crate implements exactly what it says.
//!
//! # Failover
//!
//! A [`Client`] takes a list of replica base URLs (any replica serves any request; none is a
//! leader). Calls go to one replica and stay there while it answers. A call moves to another
//! replica when the one it is on
//! - refuses or does not accept the connection within
//!   [`connect_timeout`](ClientBuilder::connect_timeout) (500 ms),
//! - answers 503 (its database is unreachable, its pool is exhausted, its LISTEN connection is
//!   lost, or it is shutting down: nothing was done), 504 (its database call was sent and never
//!   answered: it may have been applied) or, behind a proxy, 502,
//! - drops the connection or does not answer within the request's timeout, or
//! - stops accepting TCP connections while a request waits on it: every
//!   [`probe_interval`](ClientBuilder::probe_interval) (500 ms) of waiting, the client checks
//!   that the replica still accepts a connection (within the connect timeout). This is what
//!   moves a parked long-poll off a replica that died or was partitioned away, in about a
//!   second instead of at the end of the long-poll.
//!
//! The failed replica is marked down for [`quarantine`](ClientBuilder::quarantine) (5 s). The
//! next replica is the first in rotation order (after the failed one) that is not marked down;
//! when there are several, each gets a `GET /healthz` (at most
//! [`health_timeout`](ClientBuilder::health_timeout), 500 ms, in parallel) and the first that
//! answers 200 wins, without waiting for replicas behind it. When every replica has failed,
//! the client pauses (100 ms doubling to 1 s, jittered) and goes round again, until
//! [`retry_for`](ClientBuilder::retry_for) (30 s) after the call started; then
//! [`Error::Unavailable`]. A new client starts at a replica chosen round-robin.
//!
//! From a replica's death to the next successful call on another: at once when the connection
//! is refused or reset (a killed process, a restarted host), about 0.5 s plus a health check
//! when connections time out (a partition), and at most about `probe_interval +
//! connect_timeout` (1 s) for a request already waiting on it.
//!
//! # What is retried
//!
//! Only what is safe to repeat (docs/protocol.md has the table):
//! - anything that surely never reached a coordinator (connection refused, connect timeout),
//!   and anything a coordinator answered with 503 (a coordinator's failed request changes
//!   nothing);
//! - when the answer was lost (timeout, reset, 502/504), only idempotent calls: reads,
//!   heartbeats, long-polls (a long-poll cut off loses nothing: the coordinator gives back what
//!   it claimed for an answer it could not deliver, and the client simply polls again),
//!   submits (each logical submit sends one `Idempotency-Key`, the same on every attempt, so a
//!   retry returns the first attempt's ids), closes and fails (compare-and-set; see below).
//!   [`submit_workflow`](Client::submit_workflow) and [`log`](Client::log) end with
//!   [`Error::OutcomeUnknown`] instead;
//! - never a 4xx or 500: those are answers, returned as [`Error::Api`].
//!
//! A close whose first attempt was applied but whose answer was lost gets 409
//! `process <id> is not running (it is SUCCESS)` on the retry. [`Client::close`] treats exactly
//! that — a 409 whose message ends in `not running (it is SUCCESS)`, after an attempt whose
//! answer was lost — as success; [`Client::fail`] does the same with `FAILED`, and
//! [`Client::close_many`] per item. The same 409 on a first attempt (closing twice) is an
//! error. When another executor finished the process meanwhile (it was requeued after its
//! `maxexectime` while the first attempt hung, and run again elsewhere), the 409 names it —
//! `not running (it is SUCCESS, finished by "b")` — and the close is reported refused: only the
//! executor's own close counts as applied.

mod admin;
mod error;
mod lease;
mod replicas;
mod retry;
mod types;

pub use admin::{
    Colony, ColonyPage, CreatedExecutor, ExecutorPage, ExecutorStatus, ProcessFilter, ProcessOrder,
    ProcessPage, ProcessSummary, Queue,
};
pub use error::{Error, Result};
pub use replicas::Health;
pub use types::{Close, Closed, LogEntry, Process, State, Stats};
pub use url::Url;

use bytes::Bytes;
use replicas::{Rotation, pick};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use retry::{Outcome, Safety, Verdict, already_finished, backoff, verdict};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The header that makes a submit idempotent.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Most items in one `POST /v1/processes/close`; [`Client::close_many`] splits longer lists.
pub const MAX_CLOSES_PER_REQUEST: usize = 1000;

/// A new idempotency key: a random UUID (version 4), 36 characters. The coordinator accepts
/// any key of 1 to 255 bytes; keys are per colony and kept for the colony's retention.
pub fn new_idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Timeouts and failover settings; see the crate documentation for how they combine.
#[derive(Clone, Debug)]
struct Settings {
    connect_timeout: Duration,
    request_timeout: Duration,
    long_poll_grace: Duration,
    probe_interval: Duration,
    health_timeout: Duration,
    retry_for: Duration,
    quarantine: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(30),
            long_poll_grace: Duration::from_secs(5),
            probe_interval: Duration::from_millis(500),
            health_timeout: Duration::from_millis(500),
            retry_for: Duration::from_secs(30),
            quarantine: Duration::from_secs(5),
        }
    }
}

/// Builds a [`Client`] with settings other than the defaults.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    replicas: Vec<Url>,
    token: String,
    settings: Settings,
    start_at: Option<usize>,
}

impl ClientBuilder {
    /// How long a TCP connection to a replica may take (default 500 ms). Also the timeout of
    /// the liveness probe of a waiting request.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one attempt of a call other than a long-poll may take, answer included
    /// (default 30 s). A replica that stops accepting connections is left sooner (see
    /// [`probe_interval`](Self::probe_interval)).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// How much longer than its `timeout` a long-poll attempt may take before it counts as lost
    /// (default 5 s).
    pub fn long_poll_grace(mut self, grace: Duration) -> Self {
        self.settings.long_poll_grace = grace;
        self
    }

    /// While a request waits for its answer, check every `interval` that its replica still
    /// accepts TCP connections, and move the call to another replica when it does not
    /// (default 500 ms; zero turns the probe off). Checks are shared by the client's requests
    /// on the same replica; a probe opens and closes one connection.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.settings.probe_interval = interval;
        self
    }

    /// How long the `GET /healthz` checks that choose the next replica may take (default
    /// 500 ms; zero skips them and takes the next replica in rotation order).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.settings.health_timeout = timeout;
        self
    }

    /// How long a call keeps trying replicas before it gives up with [`Error::Unavailable`]
    /// (default 30 s, counted from the start of the call).
    pub fn retry_for(mut self, budget: Duration) -> Self {
        self.settings.retry_for = budget;
        self
    }

    /// How long a failed replica is tried only after the others (default 5 s).
    pub fn quarantine(mut self, quarantine: Duration) -> Self {
        self.settings.quarantine = quarantine;
        self
    }

    /// Start at replica `index` (modulo their number) instead of a round-robin choice.
    pub fn start_at(mut self, index: usize) -> Self {
        self.start_at = Some(index);
        self
    }

    pub fn build(self) -> Result<Client> {
        if self.replicas.is_empty() {
            return Err(Error::Config("no replica URLs".into()));
        }
        let replicas = self
            .replicas
            .into_iter()
            .map(Replica::new)
            .collect::<Result<Vec<_>>>()?;
        let token = self.token.trim();
        if token.is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Config("the token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(self.settings.connect_timeout)
            // Below the coordinator's idle keep-alive limit (its header read timeout, 10 s), so
            // a pooled connection is not reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .user_agent(concat!("colony-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let n = replicas.len();
        let start = self.start_at.unwrap_or_else(round_robin_start);
        Ok(Client {
            inner: Arc::new(Inner {
                rotation: Mutex::new(Rotation::new(n, start, self.settings.quarantine)),
                probes: Mutex::new(vec![None; n]),
                held: lease::Held::default(),
                replicas,
                auth,
                http,
                settings: self.settings,
            }),
        })
    }
}

/// The next client's first replica: a process-wide counter from a random offset.
fn round_robin_start() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static OFFSET: OnceLock<usize> = OnceLock::new();
    let offset = *OFFSET.get_or_init(|| uuid::Uuid::new_v4().as_u128() as usize);
    offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A uniformly random number in 0.0..1.0 (for jitter).
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

#[derive(Debug)]
struct Replica {
    url: Url,
    /// The URL without its trailing slash; paths are appended to it.
    base: String,
    host: String,
    port: u16,
}

impl Replica {
    fn new(url: Url) -> Result<Replica> {
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(Error::Config(format!(
                    "{url}: this client is built without TLS; use http:// (terminate TLS in front of the replicas)"
                )));
            }
            other => return Err(Error::Config(format!("{url}: unsupported scheme {other}"))),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "{url}: a replica URL has no query or fragment"
            )));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(Error::Config(format!("{url}: no host"))),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Replica {
            base: url.as_str().trim_end_matches('/').to_owned(),
            url,
            host,
            port,
        })
    }
}

/// A client of a set of coordinator replicas, for one token. Cheap to clone (clones share
/// connections and the replicas' standing); safe to use from many tasks at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field(
                "replicas",
                &self
                    .inner
                    .replicas
                    .iter()
                    .map(|r| r.url.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("current", &self.current_replica().as_str())
            .finish_non_exhaustive()
    }
}

struct Inner {
    replicas: Vec<Replica>,
    auth: HeaderValue,
    http: reqwest::Client,
    settings: Settings,
    rotation: Mutex<Rotation>,
    /// Per replica: when it was last probed, and whether it accepted the connection.
    probes: Mutex<Vec<Option<(Instant, bool)>>>,
    /// Processes received with a claim lease and not yet acknowledged (`lease.rs`).
    held: lease::Held,
}

/// One logical call, sent to one replica after another until one answers for good.
struct Call<'a> {
    method: Method,
    /// From `/v1/...`, without the query string.
    path: String,
    body: Option<Bytes>,
    idempotency_key: Option<&'a str>,
    safety: Safety,
    /// For a long-poll: when it ends, and `max`. Each attempt asks for the time that is left.
    long_poll: Option<(Instant, u32)>,
    /// For close (SUCCESS) and fail (FAILED): the state that, found after a lost answer,
    /// means the call was applied (retry::already_finished).
    finishes_as: Option<State>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: String, safety: Safety) -> Call<'a> {
        Call {
            method,
            path,
            body: None,
            idempotency_key: None,
            safety,
            long_poll: None,
            finishes_as: None,
        }
    }

    fn json(mut self, body: &impl serde::Serialize) -> Result<Call<'a>> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Config(format!("the body is not JSON: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }
}

/// A call's final answer: a 2xx, or the 409 of a close or fail an earlier attempt applied.
struct Reply {
    status: u16,
    body: Bytes,
    /// Some attempt before this one may have been applied.
    maybe_applied: bool,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::InvalidResponse(format!(
                "{e} in {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            ))
        })
    }
}

/// What one attempt on one replica came to.
enum Attempt {
    Answered(u16, Bytes),
    NotSent(String),
    Lost(String),
}

impl Attempt {
    fn outcome(&self) -> Outcome {
        match self {
            Attempt::Answered(status, _) => Outcome::Status(*status),
            Attempt::NotSent(_) => Outcome::NotSent,
            Attempt::Lost(_) => Outcome::Lost,
        }
    }
}

/// A reqwest error with its causes ("error sending request ...: connection refused").
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` as one URL path segment.
fn segment(text: &str) -> Result<String> {
    if text.is_empty() || text == "." || text == ".." {
        return Err(Error::Config(format!(
            "{text:?} cannot be used as a colony name in a URL"
        )));
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(out)
}

impl Inner {
    fn rotation(&self) -> MutexGuard<'_, Rotation> {
        self.rotation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `call` until a replica answers for good (see the crate documentation).
    async fn call(&self, call: &Call<'_>) -> Result<Reply> {
        let n = self.replicas.len();
        let give_up = Instant::now() + self.settings.retry_for;
        let mut tried = vec![false; n];
        let mut round = 0u32;
        let mut maybe_applied = false;
        let mut i = self.rotation().preferred();
        loop {
            tried[i] = true;
            let attempt = self.attempt(i, call).await;
            let base = &self.replicas[i].base;
            match (verdict(call.safety, attempt.outcome()), attempt) {
                (Verdict::Done, Attempt::Answered(status, body)) => {
                    self.rotation().succeeded(i);
                    return Ok(Reply {
                        status,
                        body,
                        maybe_applied,
                    });
                }
                (Verdict::Refused, Attempt::Answered(status, body)) => {
                    self.rotation().succeeded(i);
                    let error = Error::from_answer(status, &body);
                    if let Some(state) = call.finishes_as
                        && already_finished(maybe_applied, status, error.message(), state)
                    {
                        return Ok(Reply {
                            status,
                            body: Bytes::new(),
                            maybe_applied,
                        });
                    }
                    return Err(error);
                }
                (Verdict::Unknown, attempt) => {
                    self.rotation().failed(i, Instant::now());
                    return Err(Error::OutcomeUnknown(format!(
                        "{base}: {}",
                        failure_text(&attempt)
                    )));
                }
                (Verdict::Failover { maybe_applied: m }, attempt) => {
                    maybe_applied |= m;
                    let last = format!("{base}: {}", failure_text(&attempt));
                    let now = Instant::now();
                    self.rotation().failed(i, now);
                    let mut candidates = self.rotation().candidates(now, &tried);
                    if candidates.is_empty() {
                        // Every replica failed this round: pause, then go round again.
                        let pause = backoff(round, random_unit());
                        if now + pause >= give_up {
                            return Err(Error::Unavailable {
                                last,
                                maybe_applied,
                            });
                        }
                        tokio::time::sleep(pause).await;
                        round += 1;
                        tried.fill(false);
                        candidates = self.rotation().candidates(Instant::now(), &tried);
                    } else if now >= give_up {
                        return Err(Error::Unavailable {
                            last,
                            maybe_applied,
                        });
                    }
                    i = self.choose(&candidates).await;
                }
                (_, _) => unreachable!("Done and Refused come only from answers"),
            }
        }
    }

    /// One attempt of `call` on replica `i`.
    async fn attempt(&self, i: usize, call: &Call<'_>) -> Attempt {
        let replica = &self.replicas[i];
        let (url, timeout) = match call.long_poll {
            None => (
                format!("{}{}", replica.base, call.path),
                self.settings.request_timeout,
            ),
            Some((ends, max)) => {
                let seconds = ends.saturating_duration_since(Instant::now()).as_secs();
                (
                    format!("{}{}?timeout={seconds}&max={max}", replica.base, call.path),
                    Duration::from_secs(seconds) + self.settings.long_poll_grace,
                )
            }
        };
        let mut request = self
            .http
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(timeout);
        if let Some(key) = call.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        tokio::select! {
            biased;
            result = exchange => match result {
                Ok((status, body)) => Attempt::Answered(status, body),
                Err(e) if e.is_connect() => Attempt::NotSent(describe(e)),
                Err(e) => Attempt::Lost(describe(e)),
            },
            reason = self.watch(i) => Attempt::Lost(reason),
        }
    }

    /// Returns (only) when replica `i` stops accepting connections while a request waits.
    async fn watch(&self, i: usize) -> String {
        let every = self.settings.probe_interval;
        if every.is_zero() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(every).await;
            if !self.accepts_connections(i).await {
                return "the replica stopped accepting connections while the request waited".into();
            }
        }
    }

    /// Whether replica `i` accepts a TCP connection within the connect timeout (a probe at most
    /// every probe interval, shared by the requests waiting on it).
    async fn accepts_connections(&self, i: usize) -> bool {
        let recent = self.probes.lock().unwrap_or_else(|e| e.into_inner())[i]
            .filter(|(at, _)| at.elapsed() < self.settings.probe_interval);
        if let Some((_, ok)) = recent {
            return ok;
        }
        let replica = &self.replicas[i];
        let ok = matches!(
            tokio::time::timeout(
                self.settings.connect_timeout,
                tokio::net::TcpStream::connect((replica.host.as_str(), replica.port)),
            )
            .await,
            Ok(Ok(_))
        );
        self.probes.lock().unwrap_or_else(|e| e.into_inner())[i] = Some((Instant::now(), ok));
        ok
    }

    /// `GET /healthz` of each of `replicas`, in parallel (at most `timeout` each): the tasks
    /// answer (position in `replicas`, health).
    fn check_health(
        &self,
        replicas: impl Iterator<Item = usize>,
        timeout: Duration,
    ) -> tokio::task::JoinSet<(usize, Health)> {
        let mut checks = tokio::task::JoinSet::new();
        for (rank, i) in replicas.enumerate() {
            let request = self
                .http
                .get(format!("{}/healthz", self.replicas[i].base))
                .timeout(timeout);
            checks.spawn(async move { (rank, health_of(request.send().await)) });
        }
        checks
    }

    /// The replica to try next among `candidates` (best first): the best-ranked one whose
    /// `GET /healthz` answers 200 (replicas::pick). Replicas that do not answer are marked down.
    async fn choose(&self, candidates: &[usize]) -> usize {
        let timeout = self.settings.health_timeout;
        if candidates.len() == 1 || timeout.is_zero() {
            return candidates[0];
        }
        let mut checks = self.check_health(candidates.iter().copied(), timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut results = vec![None; candidates.len()];
        let mut all_in = false;
        loop {
            if let Some(rank) = pick(&results, all_in) {
                let now = Instant::now();
                let mut rotation = self.rotation();
                for (r, result) in results.iter().enumerate() {
                    if *result == Some(Health::Dead) {
                        rotation.failed(candidates[r], now);
                    }
                }
                return candidates[rank];
            }
            match tokio::time::timeout_at(deadline, checks.join_next()).await {
                Ok(Some(Ok((rank, health)))) => results[rank] = Some(health),
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => all_in = true,
            }
        }
    }
}

fn failure_text(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Answered(status, body) => Error::from_answer(*status, body).to_string(),
        Attempt::NotSent(reason) | Attempt::Lost(reason) => reason.clone(),
    }
}

impl Client {
    /// A client of `replicas` (base URLs such as `http://10.0.0.1:8080`, tried in this order
    /// from a round-robin start) acting with `token`, with the default settings.
    pub fn new(replicas: Vec<Url>, token: impl Into<String>) -> Result<Client> {
        Client::builder(replicas, token).build()
    }

    /// A builder for other settings.
    pub fn builder(replicas: Vec<Url>, token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            replicas,
            token: token.into(),
            settings: Settings::default(),
            start_at: None,
        }
    }

    /// The replica the next call goes to: the last one that answered, or where failover
    /// moved the client.
    pub fn current_replica(&self) -> Url {
        let i = self.inner.rotation().preferred();
        self.inner.replicas[i].url.clone()
    }

    /// Submits one spec (ColonyOS FunctionSpec keys) into `colony`; its process id. Retried
    /// across replicas with one idempotency key (a fresh one per call).
    pub async fn submit(&self, colony: &str, spec: &Value) -> Result<i64> {
        self.submit_with_key(colony, spec, &new_idempotency_key())
            .await
    }

    /// [`submit`](Self::submit) with the caller's idempotency key: a call that repeats an
    /// earlier call's key (and spec) returns that call's id and submits nothing, even from
    /// another process or after a restart. The same key with another spec is refused (400).
    pub async fn submit_with_key(&self, colony: &str, spec: &Value, key: &str) -> Result<i64> {
        if !spec.is_object() {
            return Err(Error::Config("a spec is a JSON object".into()));
        }
        let ids = self.submit_body(colony, spec, key).await?;
        match ids.as_slice() {
            [id] => Ok(*id),
            other => Err(Error::InvalidResponse(format!(
                "one spec submitted, {} ids returned",
                other.len()
            ))),
        }
    }

    /// Submits specs in one transaction (all or none); their ids in input order. Retried
    /// across replicas with one idempotency key (a fresh one per call).
    pub async fn submit_many(&self, colony: &str, specs: &[Value]) -> Result<Vec<i64>> {
        self.submit_many_with_key(colony, specs, &new_idempotency_key())
            .await
    }

    /// [`submit_many`](Self::submit_many) with the caller's idempotency key.
    pub async fn submit_many_with_key(
        &self,
        colony: &str,
        specs: &[Value],
        key: &str,
    ) -> Result<Vec<i64>> {
        let ids = self.submit_body(colony, &specs, key).await?;
        if ids.len() != specs.len() {
            return Err(Error::InvalidResponse(format!(
                "{} specs submitted, {} ids returned",
                specs.len(),
                ids.len()
            )));
        }
        Ok(ids)
    }

    async fn submit_body(
        &self,
        colony: &str,
        body: &impl serde::Serialize,
        key: &str,
    ) -> Result<Vec<i64>> {
        #[derive(serde::Deserialize)]
        struct Ids {
            ids: Vec<i64>,
        }
        if key.is_empty() || key.len() > 255 {
            return Err(Error::Config(
                "an idempotency key has 1 to 255 bytes".into(),
            ));
        }
        let mut call = Call::new(
            Method::POST,
            format!("/v1/colonies/{}/processes", segment(colony)?),
            Safety::Idempotent,
        )
        .json(body)?;
        call.idempotency_key = Some(key);
        Ok(self.inner.call(&call).await?.json::<Ids>()?.ids)
    }

    /// Submits a workflow (specs with `nodename` and `conditions.dependencies`); its id.
    /// Not idempotent: when its answer is lost, [`Error::OutcomeUnknown`].
    pub async fn submit_workflow(&self, colony: &str, specs: &[Value]) -> Result<i64> {
        #[derive(serde::Deserialize)]
        struct Created {
            workflow_id: i64,
        }
        let call = Call::new(
            Method::POST,
            format!("/v1/colonies/{}/workflows", segment(colony)?),
            Safety::Once,
        )
        .json(&specs)?;
        Ok(self.inner.call(&call).await?.json::<Created>()?.workflow_id)
    }

    /// Long-polls for work as the token's executor: up to `max` (1..=1000) processes, now
    /// RUNNING and assigned to it, or an empty list when `timeout` (whole seconds, at most the
    /// coordinators' `--max-timeout-s`, 60 by default) passes without work.
    ///
    /// If the replica fails meanwhile, the poll goes on at another for the time that is left
    /// (nothing is lost: a replica that could not deliver its answer gave the processes back).
    ///
    /// Each process comes with a claim lease (`lease_until`, the colony's `claim_lease`, 15 s
    /// by default): the database gives it back to WAITING unless the executor acknowledges it
    /// within the lease — its [`close`](Client::close), [`fail`](Client::fail),
    /// [`log`](Client::log) or a [`heartbeat`](Client::heartbeat) that names it. This client
    /// does it: half a lease after receiving processes, if it has not closed, failed or logged
    /// all of them, it sends one heartbeat (in a task of its own) naming every process it still
    /// holds, which acknowledges exactly those.
    pub async fn assign(&self, colony: &str, timeout: Duration, max: u32) -> Result<Vec<Process>> {
        let mut call = Call::new(
            Method::POST,
            format!("/v1/colonies/{}/assign", segment(colony)?),
            Safety::Idempotent,
        );
        call.long_poll = Some((Instant::now() + timeout, max));
        let reply = self.inner.call(&call).await?;
        if reply.status == 204 {
            return Ok(Vec::new());
        }
        let processes: Vec<Process> = reply.json()?;
        self.hold(&processes);
        Ok(processes)
    }

    /// Keeps the leases of `processes` (see [`assign`](Client::assign)).
    fn hold(&self, processes: &[Process]) {
        let mut shortest: Option<Duration> = None;
        let mut ids = Vec::new();
        for p in processes {
            if let Some(lease) = lease::length(p.started_at.as_deref(), p.lease_until.as_deref()) {
                shortest = Some(shortest.map_or(lease, |s| s.min(lease)));
                ids.push(p.id);
            }
        }
        let Some(lease) = shortest else { return };
        self.inner.held.add(ids.iter().copied());
        let client = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(lease / 2).await;
            // The heartbeat names everything held then (these and any other batch's), and
            // forgets what it acknowledged: another batch's task finds nothing left to send.
            if client.inner.held.any(&ids) {
                // Retried across replicas like any heartbeat; if it fails for good, the
                // executor may still close in time, and otherwise the lease gives it back.
                let _ = client.heartbeat().await;
            }
        });
    }

    /// Marks process `id` SUCCESS with `output` (`None` leaves it NULL). Only its assigned
    /// executor may, only while it runs (409 otherwise; see the crate documentation for the
    /// one 409 that counts as success).
    pub async fn close(&self, id: i64, output: Option<Value>) -> Result<()> {
        let mut call = Call::new(
            Method::POST,
            format!("/v1/processes/{id}/close"),
            Safety::Idempotent,
        );
        if let Some(output) = output {
            call = call.json(&serde_json::json!({ "output": output }))?;
        }
        call.finishes_as = Some(State::Success);
        let outcome = self.inner.call(&call).await.map(drop);
        self.inner.held.remove(id);
        outcome
    }

    /// Closes many processes, [`MAX_CLOSES_PER_REQUEST`] per request; one result per distinct
    /// id, in order. An item refused with `not running (it is SUCCESS)` after a request
    /// whose answer was lost counts as closed.
    pub async fn close_many(&self, closes: &[Close]) -> Result<Vec<Closed>> {
        #[derive(serde::Deserialize)]
        struct Results {
            results: Vec<Closed>,
        }
        let mut out = Vec::with_capacity(closes.len());
        for chunk in closes.chunks(MAX_CLOSES_PER_REQUEST) {
            let call = Call::new(
                Method::POST,
                "/v1/processes/close".into(),
                Safety::Idempotent,
            )
            .json(&chunk)?;
            let reply = self.inner.call(&call).await;
            for close in chunk {
                self.inner.held.remove(close.id);
            }
            let reply = reply?;
            for mut item in reply.json::<Results>()?.results {
                if !item.closed
                    && already_finished(
                        reply.maybe_applied,
                        409,
                        item.error.as_deref().unwrap_or_default(),
                        State::Success,
                    )
                {
                    item.closed = true;
                    item.error = None;
                }
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Marks process `id` FAILED with `errors`. Only its assigned executor may, only while it
    /// runs; a retry that finds it FAILED after a lost answer counts as success.
    pub async fn fail<S: AsRef<str>>(&self, id: i64, errors: &[S]) -> Result<()> {
        let errors: Vec<&str> = errors.iter().map(AsRef::as_ref).collect();
        let mut call = Call::new(
            Method::POST,
            format!("/v1/processes/{id}/fail"),
            Safety::Idempotent,
        )
        .json(&serde_json::json!({ "errors": errors }))?;
        call.finishes_as = Some(State::Failed);
        let outcome = self.inner.call(&call).await.map(drop);
        self.inner.held.remove(id);
        outcome
    }

    /// Process `id` (404 when it does not exist or is in another colony).
    pub async fn process(&self, id: i64) -> Result<Process> {
        let call = Call::new(
            Method::GET,
            format!("/v1/processes/{id}"),
            Safety::Idempotent,
        );
        self.inner.call(&call).await?.json()
    }

    /// The colony's counts.
    pub async fn stats(&self, colony: &str) -> Result<Stats> {
        let call = Call::new(
            Method::GET,
            format!("/v1/colonies/{}/stats", segment(colony)?),
            Safety::Idempotent,
        );
        self.inner.call(&call).await?.json()
    }

    /// Workflow `id`'s graph, as `colony_assign.workflow()` returns it.
    pub async fn workflow(&self, id: i64) -> Result<Value> {
        let call = Call::new(
            Method::GET,
            format!("/v1/workflows/{id}"),
            Safety::Idempotent,
        );
        self.inner.call(&call).await?.json()
    }

    /// Keeps the token's executor alive during a long process, and acknowledges the claim
    /// leases of the processes this client holds: received from [`assign`](Client::assign)
    /// and not yet closed, failed or logged (`{"processes": [...]}`; an empty body when it
    /// holds none, which only keeps the executor alive). On success those are no longer held.
    pub async fn heartbeat(&self) -> Result<()> {
        let ids = self.inner.held.ids();
        let mut call = Call::new(
            Method::POST,
            "/v1/executors/heartbeat".into(),
            Safety::Idempotent,
        );
        if !ids.is_empty() {
            call = call.json(&serde_json::json!({ "processes": ids }))?;
        }
        self.inner.call(&call).await?;
        self.inner.held.take_any(&ids);
        Ok(())
    }

    /// Adds a line to process `id`'s log (only its executor, while it runs; at most 16 KiB).
    /// Not idempotent: when its answer is lost, [`Error::OutcomeUnknown`].
    pub async fn log(&self, id: i64, message: &str) -> Result<()> {
        let call = Call::new(
            Method::POST,
            format!("/v1/processes/{id}/logs"),
            Safety::Once,
        )
        .json(&serde_json::json!({ "message": message }))?;
        let outcome = self.inner.call(&call).await.map(drop);
        if outcome.is_ok() {
            // Acknowledged its lease.
            self.inner.held.remove(id);
        }
        outcome
    }

    /// Process `id`'s log, oldest first.
    pub async fn logs(&self, id: i64) -> Result<Vec<LogEntry>> {
        let call = Call::new(
            Method::GET,
            format!("/v1/processes/{id}/logs"),
            Safety::Idempotent,
        );
        self.inner.call(&call).await?.json()
    }

    /// Every replica's `GET /healthz`, checked in parallel (at most the health timeout each,
    /// or 500 ms when health checks are off), in the order the replicas were given.
    pub async fn health(&self) -> Vec<(Url, Health)> {
        let timeout = match self.inner.settings.health_timeout {
            t if t.is_zero() => Duration::from_millis(500),
            t => t,
        };
        let mut checks = self
            .inner
            .check_health(0..self.inner.replicas.len(), timeout);
        let mut out: Vec<(Url, Health)> = self
            .inner
            .replicas
            .iter()
            .map(|r| (r.url.clone(), Health::Dead))
            .collect();
        while let Some(joined) = checks.join_next().await {
            if let Ok((i, health)) = joined {
                out[i].1 = health;
            }
        }
        out
    }
}

fn health_of(answer: std::result::Result<reqwest::Response, reqwest::Error>) -> Health {
    match answer {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Health::Healthy,
        Ok(_) => Health::Degraded,
        Err(_) => Health::Dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colony_names_are_one_path_segment() {
        assert_eq!(segment("c").unwrap(), "c");
        assert_eq!(segment("a b/c?d").unwrap(), "a%20b%2Fc%3Fd");
        assert_eq!(segment("ü").unwrap(), "%C3%BC");
        assert_eq!(segment("x.y_z-~").unwrap(), "x.y_z-~");
        assert!(segment("..").is_err());
        assert!(segment("").is_err());
    }

    #[test]
    fn replica_urls_are_checked() {
        let ok = Replica::new(Url::parse("http://127.0.0.1:8080/").unwrap()).unwrap();
        assert_eq!(ok.base, "http://127.0.0.1:8080");
        assert_eq!((ok.host.as_str(), ok.port), ("127.0.0.1", 8080));
        let prefixed = Replica::new(Url::parse("http://lb.example/colony/").unwrap()).unwrap();
        assert_eq!(prefixed.base, "http://lb.example/colony");
        assert_eq!(prefixed.port, 80);
        let v6 = Replica::new(Url::parse("http://[::1]:9/").unwrap()).unwrap();
        assert_eq!(v6.host, "::1");
        assert!(matches!(
            Replica::new(Url::parse("https://x/").unwrap()),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Replica::new(Url::parse("http://x/?a=1").unwrap()),
            Err(Error::Config(_))
        ));
        assert!(matches!(Client::new(vec![], "t"), Err(Error::Config(_))));
        assert!(matches!(
            Client::new(vec![Url::parse("http://x/").unwrap()], " "),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn keys_are_fresh_uuids() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn clients_start_round_robin() {
        let replicas: Vec<Url> = (1..=3)
            .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")).unwrap())
            .collect();
        let starts: std::collections::HashSet<String> = (0..3)
            .map(|_| {
                Client::new(replicas.clone(), "t")
                    .unwrap()
                    .current_replica()
                    .to_string()
            })
            .collect();
        // Three clients made one after another start on three replicas. (The counter is
        // process-wide: every other test here that builds a client uses start_at.)
        assert_eq!(starts.len(), 3, "{starts:?}");
        let pinned = Client::builder(replicas, "t").start_at(4).build().unwrap();
        assert_eq!(pinned.current_replica().as_str(), "http://127.0.0.1:2/");
    }

    #[test]
    fn random_units_are_in_range() {
        for _ in 0..1000 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
