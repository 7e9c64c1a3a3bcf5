//! What the coordinator sends and takes, as Rust types.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A process's state (`colony_assign.process.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i32", into = "i32")]
pub enum State {
    /// 0: waiting to be assigned.
    Waiting,
    /// 1: assigned to an executor.
    Running,
    /// 2: closed.
    Success,
    /// 3: failed (by its executor, or by a deadline with no retries left).
    Failed,
    /// 4: cancelled.
    Cancelled,
    /// A state this client does not know.
    Other(i32),
}

impl From<i32> for State {
    fn from(n: i32) -> State {
        match n {
            0 => State::Waiting,
            1 => State::Running,
            2 => State::Success,
            3 => State::Failed,
            4 => State::Cancelled,
            n => State::Other(n),
        }
    }
}

impl State {
    /// The states the coordinator has, in their numeric order.
    pub const KNOWN: [State; 5] = [
        State::Waiting,
        State::Running,
        State::Success,
        State::Failed,
        State::Cancelled,
    ];
}

/// The name the coordinator's messages, filters and docs use: `WAITING`, `RUNNING`,
/// `SUCCESS`, `FAILED`, `CANCELLED`; `STATE_<n>` for a state this client does not know.
impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Waiting => f.write_str("WAITING"),
            State::Running => f.write_str("RUNNING"),
            State::Success => f.write_str("SUCCESS"),
            State::Failed => f.write_str("FAILED"),
            State::Cancelled => f.write_str("CANCELLED"),
            State::Other(n) => write!(f, "STATE_{n}"),
        }
    }
}

/// A state's name as [`Display`](std::fmt::Display) writes it, in any case (`waiting`,
/// `WAITING`, `state_7`).
impl std::str::FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<State, String> {
        if let Some(state) = State::KNOWN
            .into_iter()
            .find(|s| s.to_string().eq_ignore_ascii_case(text))
        {
            return Ok(state);
        }
        text.get(..6)
            .filter(|prefix| prefix.eq_ignore_ascii_case("STATE_"))
            .and_then(|_| text[6..].parse::<i32>().ok())
            .map(State::from)
            .ok_or_else(|| format!("{text:?} is not a process state"))
    }
}

impl From<State> for i32 {
    fn from(s: State) -> i32 {
        match s {
            State::Waiting => 0,
            State::Running => 1,
            State::Success => 2,
            State::Failed => 3,
            State::Cancelled => 4,
            State::Other(n) => n,
        }
    }
}

/// A process, as `assign`, `GET /v1/processes/{id}` and the SQL type `colony_assign.process`
/// give it. Timestamps are RFC 3339 text. Fields this client does not know are kept in
/// `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub id: i64,
    pub colony: String,
    pub state: State,
    pub executor_type: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub executor_names: Option<Vec<String>>,
    #[serde(default)]
    pub assigned_executor: Option<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub funcname: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub nodename: Option<String>,
    /// The spec as submitted (ColonyOS FunctionSpec keys: `funcname`, `args`, `kwargs`, ...).
    pub spec: Value,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub errors: Option<Vec<String>>,
    #[serde(default)]
    pub retries: i32,
    #[serde(default)]
    pub submitted_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub exec_deadline: Option<String>,
    #[serde(default)]
    pub workflow_id: Option<i64>,
    /// Until when the executor must acknowledge this claim (close, fail, log or a heartbeat
    /// naming it), or the database gives it back; set on a process a long-poll handed out.
    #[serde(default)]
    pub lease_until: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Process {
    /// `spec.args` (empty when absent).
    pub fn args(&self) -> &[Value] {
        self.spec
            .get("args")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// `spec.kwargs`, if it is an object.
    pub fn kwargs(&self) -> Option<&Map<String, Value>> {
        self.spec.get("kwargs").and_then(Value::as_object)
    }
}

/// A colony's counts (`GET /v1/colonies/{colony}/stats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub paused: bool,
    pub strict: bool,
    pub executors: i64,
    pub waiting: i64,
    pub blocked: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// One line of a process's log (`GET /v1/processes/{id}/logs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub logged_at: String,
    pub executor: String,
    pub message: String,
}

/// One item of [`Client::close_many`](crate::Client::close_many).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Close {
    pub id: i64,
    /// The output; `None` leaves it NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// What [`Client::close_many`](crate::Client::close_many) did with one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub id: i64,
    /// Whether the process is now SUCCESS because of this call.
    pub closed: bool,
    /// Why not, e.g. `not running (it is CANCELLED)`, `assigned to another executor`,
    /// `unknown process`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_process_as_the_coordinator_sends_it() {
        let p: Process = serde_json::from_value(json!({
            "id": 7, "colony": "c", "state": 1, "executor_type": "t", "location": null,
            "executor_names": null, "assigned_executor": "e", "priority": 0, "funcname": "add",
            "label": null, "nodename": null,
            "spec": {"funcname": "add", "args": [1, 2], "kwargs": {"x": 1}, "conditions": {"executortype": "t"}},
            "input": null, "output": null, "errors": null, "retries": 0,
            "submitted_at": "2025-01-01T00:00:00+00:00", "started_at": "2025-01-01T00:00:01+00:00",
            "ended_at": null, "exec_deadline": null, "workflow_id": null, "something_new": 1,
            "lease_until": "2025-01-01T00:00:16+00:00"
        }))
        .unwrap();
        assert_eq!(p.lease_until.as_deref(), Some("2025-01-01T00:00:16+00:00"));
        assert!(!p.extra.contains_key("lease_until"));
        assert_eq!(p.state, State::Running);
        assert_eq!(p.args(), &[json!(1), json!(2)]);
        assert_eq!(p.kwargs().unwrap()["x"], json!(1));
        assert_eq!(p.extra["something_new"], json!(1));
        assert_eq!(State::from(9), State::Other(9));
        assert_eq!(serde_json::to_value(State::Cancelled).unwrap(), json!(4));
    }

    #[test]
    fn states_have_names_both_ways() {
        for state in State::KNOWN.into_iter().chain([State::Other(9)]) {
            assert_eq!(state.to_string().parse::<State>(), Ok(state));
            assert_eq!(state.to_string().to_lowercase().parse::<State>(), Ok(state));
        }
        assert_eq!(State::Failed.to_string(), "FAILED");
        assert_eq!(State::Other(-1).to_string(), "STATE_-1");
        assert_eq!("cancelled".parse::<State>(), Ok(State::Cancelled));
        assert!("done".parse::<State>().is_err());
        assert!("STATE_x".parse::<State>().is_err());
        assert!("é".parse::<State>().is_err());
    }

    #[test]
    fn close_items_leave_out_a_missing_output() {
        assert_eq!(
            serde_json::to_value([
                Close {
                    id: 1,
                    output: None
                },
                Close {
                    id: 2,
                    output: Some(json!(null))
                }
            ])
            .unwrap(),
            json!([{"id": 1}, {"id": 2, "output": null}])
        );
    }
}
