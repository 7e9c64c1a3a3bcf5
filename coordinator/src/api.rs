//! The JSON the HTTP API speaks, as Rust types. Handlers return these (rows decoded from the
//! database go through them), and the OpenAPI document (`GET /openapi.json`) is generated from
//! them, so the document describes exactly what is served.
//!
//! Timestamps are RFC 3339 text as PostgreSQL writes them in JSON (`2024-05-01T12:00:00.123456+00:00`).
//! Optional fields are present with `null` rather than left out, as `to_jsonb` has them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Every error answer: `{"error": {"code", "message", "sqlstate"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Follows the status: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `request_timeout`, `payload_too_large`, `too_many_requests`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong, naming the offending field or id ("internal error" for 500s, whose
    /// cause is logged instead).
    pub message: String,
    /// The SQLSTATE, when the extension raised the error (e.g. `22023`, `P0002`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

/// A process: what `assign` hands out, `GET /v1/processes/{id}` returns, and the SQL type
/// `colony_assign.process` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Process {
    pub id: i64,
    pub colony: String,
    /// WAITING 0, RUNNING 1, SUCCESS 2, FAILED 3, CANCELLED 4.
    pub state: i32,
    pub executor_type: String,
    /// `conditions.locationname`; null = any location.
    pub location: Option<String>,
    /// `conditions.executornames`; null = any executor of the type.
    pub executor_names: Option<Vec<String>>,
    pub assigned_executor: Option<String>,
    pub priority: i32,
    pub funcname: String,
    pub label: Option<String>,
    pub nodename: Option<String>,
    /// The spec exactly as submitted (ColonyOS FunctionSpec keys: args, kwargs, ...).
    pub spec: Value,
    /// Input given to the executor (workflow children: their parents' outputs).
    pub input: Option<Value>,
    /// What `close` reported.
    pub output: Option<Value>,
    /// What `fail` reported, or why the system failed it.
    pub errors: Option<Vec<String>>,
    pub retries: i32,
    #[schema(format = DateTime)]
    pub submitted_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    #[schema(format = DateTime)]
    pub exec_deadline: Option<String>,
    pub workflow_id: Option<i64>,
    /// Claim lease (docs/protocol.md): a process handed out by a long-poll goes back to
    /// WAITING unless its executor closes, fails, logs to it or heartbeats by then; null once
    /// acknowledged, and for SQL-direct claims.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub lease_until: Option<String>,
}

/// A process in a listing: a [`Process`] without `spec`, `input`, `output` and `errors` (each
/// up to 256 KiB; `GET /v1/processes/{id}` has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessSummary {
    pub id: i64,
    pub colony: String,
    /// WAITING 0, RUNNING 1, SUCCESS 2, FAILED 3, CANCELLED 4.
    pub state: i32,
    pub executor_type: String,
    pub location: Option<String>,
    pub executor_names: Option<Vec<String>>,
    pub assigned_executor: Option<String>,
    pub priority: i32,
    pub funcname: String,
    pub label: Option<String>,
    pub nodename: Option<String>,
    pub retries: i32,
    #[schema(format = DateTime)]
    pub submitted_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    #[schema(format = DateTime)]
    pub exec_deadline: Option<String>,
    pub workflow_id: Option<i64>,
}

/// One page of a colony's processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessPage {
    pub processes: Vec<ProcessSummary>,
    /// Pass as `after` (with the same filters and order) for the next page; null on the last.
    /// A page may hold fewer than `limit` processes, or none, and still have a `next`: a page
    /// examines a bounded number of rows, so a rare filter ends it early.
    pub next: Option<String>,
}

/// A colony and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Colony {
    pub name: String,
    /// While true, nothing is assigned in the colony.
    pub paused: bool,
    /// Strict mode: processes start in exact priority order.
    pub strict: bool,
    /// An executor silent this long (seconds) is stale and its processes are requeued.
    pub stale_after_s: f64,
    /// Finished processes are deleted this long (seconds) after they ended.
    pub retention_s: f64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// One page of colonies, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ColonyPage {
    pub colonies: Vec<Colony>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<String>,
}

/// An executor and its liveness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutorStatus {
    pub name: String,
    pub executor_type: String,
    /// Null: no location (it gets only location-less processes).
    pub location: Option<String>,
    #[schema(format = DateTime)]
    pub registered_at: String,
    /// Its last call (assign, close, fail, log, heartbeat), to within a second.
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// When the reaper found it silent past its colony's `stale_after` (cleared by its next call).
    #[schema(format = DateTime)]
    pub stale_since: Option<String>,
    /// Seen within `stale_after` and not marked stale.
    pub alive: bool,
    /// Processes it is running now.
    pub running: i64,
}

/// One page of a colony's executors, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutorPage {
    pub executors: Vec<ExecutorStatus>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<String>,
}

/// The backlog of one (executor type, location): processes assignable now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub executor_type: String,
    /// Null: processes any executor of the type may take.
    pub location: Option<String>,
    pub waiting: i64,
    /// Submission time of the oldest of them.
    #[schema(format = DateTime)]
    pub oldest_submitted_at: String,
    /// How long the oldest has been waiting, in seconds.
    pub oldest_age_s: f64,
}

/// A colony's queues, by executor type then location (location-less first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<Queue>,
}

/// A colony's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub paused: bool,
    pub strict: bool,
    pub executors: i64,
    /// Assignable now.
    pub waiting: i64,
    /// Workflow children waiting for their parents.
    pub blocked: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// One line of a process's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    #[schema(format = DateTime)]
    pub logged_at: String,
    pub executor: String,
    pub message: String,
}

/// The ids of submitted processes, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    pub ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSubmitted {
    pub workflow_id: i64,
}

/// One item of a batched close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloseItem {
    pub id: i64,
    /// Any JSON; absent leaves the output null.
    #[serde(default)]
    pub output: Option<Value>,
}

/// What a batched close did with one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Closed {
    pub id: i64,
    pub closed: bool,
    /// Why not (e.g. `not running (it is CANCELLED)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloseResults {
    pub results: Vec<Closed>,
}

/// Body of `close` (optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Any JSON.
    #[serde(default)]
    pub output: Option<Value>,
}

/// Body of `fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    pub errors: Vec<String>,
}

/// Body of `POST /v1/executors/heartbeat` (optional; none acknowledges nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// Processes the executor holds: the claim leases of those RUNNING for it are acknowledged
    /// (docs/protocol.md); other ids are ignored.
    #[serde(default)]
    pub processes: Vec<i64>,
}

/// Body of a log line (at most 16 KiB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBody {
    pub message: String,
}

/// Body of `POST /v1/colonies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewColony {
    /// 1-255 bytes, any characters.
    pub name: String,
}

/// Body of `POST /v1/colonies/{colony}/executors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExecutor {
    /// 1-255 bytes, unique in the colony.
    pub name: String,
    /// Its executor type (ColonyOS's spelling; `executor_type` is accepted too).
    #[serde(alias = "executor_type")]
    pub executortype: String,
    /// Where it runs; absent, null or "" = no location.
    #[serde(default)]
    pub location: Option<String>,
}

/// A registered executor and its bearer token. The token is shown this once: only its hash is
/// stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedExecutor {
    pub colony: String,
    pub name: String,
    pub executor_type: String,
    pub location: Option<String>,
    pub token: String,
}

/// Body of `PUT /v1/colonies/{colony}/strict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Strictness {
    pub strict: bool,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// `ok` or `unreachable`.
    pub database: String,
    /// `connected` or `disconnected`.
    pub listener: String,
    pub replica: String,
}
