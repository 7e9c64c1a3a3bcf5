//! Admin calls, for a client made with an admin token (`colony_assign.add_admin()`): colonies,
//! executors, colony control and listings. docs/coordinator.md describes the routes; the
//! coordinator serves their OpenAPI document at `/openapi.json`.
//!
//! They fail over between replicas like every call. Reads and the controls that set a state
//! (pause, resume, strict) are idempotent and retried when an answer is lost; adding and
//! removing are not (a retry could not tell its own success from a conflict), and end with
//! [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown) instead, as does [`Client::cancel`].
//!
//! ```no_run
//! # async fn run() -> colony_client::Result<()> {
//! use colony_client::{Client, ProcessFilter, State, Url};
//!
//! let admin = Client::new(vec![Url::parse("http://10.0.0.1:8080").unwrap()], "caa_...")?;
//! admin.add_colony("c").await?;
//! let executor = admin.add_executor("c", "gpu-1", "gpu", Some("edge")).await?;
//! println!("token for gpu-1: {}", executor.token);
//! let filter = ProcessFilter { state: Some(State::Waiting), ..ProcessFilter::default() };
//! let mut page = admin.processes("c", &filter).await?;
//! loop {
//!     for process in &page.processes {
//!         println!("{} {}", process.id, process.funcname);
//!     }
//!     let Some(next) = page.next else { break };
//!     page = admin.processes("c", &ProcessFilter { after: Some(next), ..filter.clone() }).await?;
//! }
//! # Ok(())
//! # }
//! ```

use crate::retry::Safety;
use crate::{Call, Client, Result, State, segment};
use reqwest::Method;
use serde::{Deserialize, Serialize};

/// A colony and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Colony {
    pub name: String,
    pub paused: bool,
    pub strict: bool,
    /// Executor liveness period, seconds.
    pub stale_after_s: f64,
    /// How long finished processes are kept, seconds.
    pub retention_s: f64,
    pub created_at: String,
}

/// A page of colonies ([`Client::colonies`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColonyPage {
    pub colonies: Vec<Colony>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

/// An executor and its liveness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutorStatus {
    pub name: String,
    pub executor_type: String,
    pub location: Option<String>,
    pub registered_at: String,
    pub last_seen: String,
    pub stale_since: Option<String>,
    /// Seen within its colony's `stale_after` and not marked stale.
    pub alive: bool,
    /// Processes it runs now.
    pub running: i64,
}

/// A page of a colony's executors ([`Client::executors`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutorPage {
    pub executors: Vec<ExecutorStatus>,
    pub next: Option<String>,
}

/// A registered executor with its bearer token, which is shown this once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedExecutor {
    pub colony: String,
    pub name: String,
    pub executor_type: String,
    pub location: Option<String>,
    pub token: String,
}

impl std::fmt::Debug for CreatedExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token in a log line is a leaked token.
        f.debug_struct("CreatedExecutor")
            .field("colony", &self.colony)
            .field("name", &self.name)
            .field("executor_type", &self.executor_type)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// A process in a listing: a [`Process`](crate::Process) without spec, input, output and
/// errors ([`Client::process`] has them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessSummary {
    pub id: i64,
    pub colony: String,
    pub state: State,
    pub executor_type: String,
    pub location: Option<String>,
    pub executor_names: Option<Vec<String>>,
    pub assigned_executor: Option<String>,
    pub priority: i32,
    pub funcname: String,
    pub label: Option<String>,
    pub nodename: Option<String>,
    pub retries: i32,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub exec_deadline: Option<String>,
    pub workflow_id: Option<i64>,
}

/// A page of a colony's processes ([`Client::processes`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessPage {
    pub processes: Vec<ProcessSummary>,
    /// Pass as [`ProcessFilter::after`] (with the same filter) for the next page; `None` on the
    /// last. A page may hold fewer processes than asked for, even none, and still have a next
    /// one: a page examines a bounded number of processes.
    pub next: Option<String>,
}

/// The order of a process listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcessOrder {
    /// Newest submission first (every state).
    #[default]
    Submitted,
    /// Finished processes, most recently ended first.
    Ended,
}

/// What [`Client::processes`] lists; `None` is no filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFilter {
    pub state: Option<State>,
    pub executor_type: Option<String>,
    /// Processes that require this location.
    pub location: Option<String>,
    /// Processes this executor runs or ran.
    pub executor: Option<String>,
    pub workflow: Option<i64>,
    /// From this time on (RFC 3339; submission time, or end time with [`ProcessOrder::Ended`]).
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    pub until: Option<String>,
    pub order: ProcessOrder,
    /// The previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1..=1000; `None` = 100.
    pub limit: Option<u32>,
}

/// The backlog of one (executor type, location).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub executor_type: String,
    /// `None`: processes any executor of the type may take.
    pub location: Option<String>,
    pub waiting: i64,
    pub oldest_submitted_at: String,
    pub oldest_age_s: f64,
}

/// `path` with a query string of the pairs whose value is given.
fn with_query(path: String, pairs: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

fn page_query(after: Option<&str>, limit: Option<u32>) -> [(&'static str, Option<String>); 2] {
    [
        ("after", after.map(str::to_owned)),
        ("limit", limit.map(|l| l.to_string())),
    ]
}

impl Client {
    /// Adds a colony. (A token scoped to some colonies may add only those it names.)
    pub async fn add_colony(&self, name: &str) -> Result<()> {
        let call = Call::new(Method::POST, "/v1/colonies".into(), Safety::Once)
            .json(&serde_json::json!({ "name": name }))?;
        self.inner.call(&call).await.map(drop)
    }

    /// Removes a colony with its executors and processes.
    pub async fn remove_colony(&self, name: &str) -> Result<()> {
        let call = Call::new(
            Method::DELETE,
            format!("/v1/colonies/{}", segment(name)?),
            Safety::Once,
        );
        self.inner.call(&call).await.map(drop)
    }

    /// A page of the colonies the token reaches, by name, after `after`; `limit` 1..=1000
    /// (`None` = 100).
    pub async fn colonies(&self, after: Option<&str>, limit: Option<u32>) -> Result<ColonyPage> {
        let path = with_query("/v1/colonies".into(), &page_query(after, limit));
        let call = Call::new(Method::GET, path, Safety::Idempotent);
        self.inner.call(&call).await?.json()
    }

    /// Registers an executor; the answer carries its token, this once.
    pub async fn add_executor(
        &self,
        colony: &str,
        name: &str,
        executor_type: &str,
        location: Option<&str>,
    ) -> Result<CreatedExecutor> {
        let call = Call::new(
            Method::POST,
            format!("/v1/colonies/{}/executors", segment(colony)?),
            Safety::Once,
        )
        .json(&serde_json::json!({
            "name": name,
            "executortype": executor_type,
            "location": location,
        }))?;
        self.inner.call(&call).await?.json()
    }

    /// Removes an executor: its running processes go back to WAITING, its token stops working.
    pub async fn remove_executor(&self, colony: &str, name: &str) -> Result<()> {
        let call = Call::new(
            Method::DELETE,
            format!(
                "/v1/colonies/{}/executors/{}",
                segment(colony)?,
                segment(name)?
            ),
            Safety::Once,
        );
        self.inner.call(&call).await.map(drop)
    }

    /// A page of a colony's executors with their liveness, by name.
    pub async fn executors(
        &self,
        colony: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ExecutorPage> {
        let path = with_query(
            format!("/v1/colonies/{}/executors", segment(colony)?),
            &page_query(after, limit),
        );
        let call = Call::new(Method::GET, path, Safety::Idempotent);
        self.inner.call(&call).await?.json()
    }

    /// Pauses assignment in a colony.
    pub async fn pause(&self, colony: &str) -> Result<()> {
        self.control(colony, "pause").await
    }

    /// Resumes assignment; executors parked on every replica wake.
    pub async fn resume(&self, colony: &str) -> Result<()> {
        self.control(colony, "resume").await
    }

    async fn control(&self, colony: &str, action: &str) -> Result<()> {
        let call = Call::new(
            Method::POST,
            format!("/v1/colonies/{}/{action}", segment(colony)?),
            Safety::Idempotent,
        );
        self.inner.call(&call).await.map(drop)
    }

    /// Switches a colony between strict (exact priority order) and distributed assignment.
    pub async fn set_strict(&self, colony: &str, strict: bool) -> Result<()> {
        let call = Call::new(
            Method::PUT,
            format!("/v1/colonies/{}/strict", segment(colony)?),
            Safety::Idempotent,
        )
        .json(&serde_json::json!({ "strict": strict }))?;
        self.inner.call(&call).await.map(drop)
    }

    /// Cancels a WAITING or RUNNING process (an admin token, or an executor token of its
    /// colony). A second cancel is a 409.
    pub async fn cancel(&self, id: i64) -> Result<()> {
        let call = Call::new(
            Method::POST,
            format!("/v1/processes/{id}/cancel"),
            Safety::Once,
        );
        self.inner.call(&call).await.map(drop)
    }

    /// A page of a colony's processes (summaries), newest first; see [`ProcessPage::next`].
    pub async fn processes(&self, colony: &str, filter: &ProcessFilter) -> Result<ProcessPage> {
        let order = match filter.order {
            ProcessOrder::Submitted => None,
            ProcessOrder::Ended => Some("ended".to_owned()),
        };
        let path = with_query(
            format!("/v1/colonies/{}/processes", segment(colony)?),
            &[
                ("state", filter.state.map(|s| i32::from(s).to_string())),
                ("executortype", filter.executor_type.clone()),
                ("location", filter.location.clone()),
                ("executor", filter.executor.clone()),
                ("workflow", filter.workflow.map(|w| w.to_string())),
                ("since", filter.since.clone()),
                ("until", filter.until.clone()),
                ("order", order),
                ("after", filter.after.clone()),
                ("limit", filter.limit.map(|l| l.to_string())),
            ],
        );
        let call = Call::new(Method::GET, path, Safety::Idempotent);
        self.inner.call(&call).await?.json()
    }

    /// A colony's backlog per (executor type, location), with the oldest waiting process's
    /// age.
    pub async fn queues(&self, colony: &str) -> Result<Vec<Queue>> {
        #[derive(Deserialize)]
        struct Queues {
            queues: Vec<Queue>,
        }
        let call = Call::new(
            Method::GET,
            format!("/v1/colonies/{}/queues", segment(colony)?),
            Safety::Idempotent,
        );
        Ok(self.inner.call(&call).await?.json::<Queues>()?.queues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_carry_only_given_values_percent_encoded() {
        assert_eq!(with_query("/p".into(), &[("a", None)]), "/p");
        assert_eq!(
            with_query(
                "/p".into(),
                &[
                    ("after", Some("s:1:2".into())),
                    ("x", None),
                    ("since", Some("2024-01-01T00:00:00+02:00".into())),
                    ("location", Some("a b&c".into())),
                ]
            ),
            "/p?after=s%3A1%3A2&since=2024-01-01T00%3A00%3A00%2B02%3A00&location=a+b%26c"
        );
    }

    #[test]
    fn a_created_executor_keeps_its_token_out_of_debug_output() {
        let created = CreatedExecutor {
            colony: "c".into(),
            name: "e".into(),
            executor_type: "t".into(),
            location: None,
            token: "cat_secret".into(),
        };
        assert!(!format!("{created:?}").contains("cat_secret"));
    }
}
