//! An executor's view of the HTTP API: long-poll assign and close, strict (a test fails on any
//! unexpected answer) or tolerant (a load generator counts failures and goes on).

use crate::coordinator::Coordinator;
use serde_json::Value;

/// An executor speaking HTTP to one coordinator, on a client of its own.
#[derive(Clone)]
pub struct HttpExecutor {
    /// The executor's name (empty when only its token matters).
    pub name: String,
    pub token: String,
    /// The coordinator's `http://<address>`.
    pub base: String,
    pub http: reqwest::Client,
}

/// The answer to one tolerant long-poll.
pub enum Poll {
    /// 200: the processes handed out.
    Got(Vec<Value>),
    /// 204: nothing within the timeout.
    Empty,
    /// Any other status, a broken connection or an unreadable body.
    Failed,
}

impl HttpExecutor {
    /// The executor with `token`, on `coordinator`.
    pub fn new(coordinator: &Coordinator, token: &str) -> HttpExecutor {
        HttpExecutor::at(&coordinator.base, "", token)
    }

    /// Executor `name` with `token`, on the coordinator at `base` (`http://<address>`). Like a
    /// real executor it keeps (at most) one idle connection.
    pub fn at(base: &str, name: &str, token: &str) -> HttpExecutor {
        HttpExecutor {
            name: name.to_owned(),
            token: token.to_owned(),
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("HTTP client"),
        }
    }

    fn assign_request(&self, colony: &str, timeout_s: u64, max: u32) -> reqwest::RequestBuilder {
        self.http
            .post(format!(
                "{}/v1/colonies/{colony}/assign?timeout={timeout_s}&max={max}",
                self.base
            ))
            .bearer_auth(&self.token)
    }

    /// One long-poll: the processes handed out, or empty on 204; panics on anything else.
    pub async fn assign(&self, colony: &str, timeout_s: u64, max: u32) -> Vec<Value> {
        let response = self
            .assign_request(colony, timeout_s, max)
            .send()
            .await
            .expect("long-poll request");
        match response.status().as_u16() {
            204 => Vec::new(),
            200 => response.json().await.expect("JSON array of processes"),
            other => panic!(
                "long-poll answered {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// One long-poll that never panics.
    pub async fn poll(&self, colony: &str, timeout_s: u64, max: u32) -> Poll {
        match self.assign_request(colony, timeout_s, max).send().await {
            Ok(r) if r.status() == 204 => Poll::Empty,
            Ok(r) if r.status() == 200 => match r.json::<Vec<Value>>().await {
                Ok(processes) => Poll::Got(processes),
                Err(_) => Poll::Failed,
            },
            Ok(_) | Err(_) => Poll::Failed,
        }
    }

    /// Closes process `id` with `output`; panics unless the answer is 204.
    pub async fn close(&self, id: i64, output: Value) {
        let response = self
            .http
            .post(format!("{}/v1/processes/{id}/close", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "output": output }))
            .send()
            .await
            .expect("close request");
        assert_eq!(
            response.status(),
            204,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Closes process `id` without output; whether the answer was 204.
    pub async fn try_close(&self, id: i64) -> bool {
        matches!(
            self.http
                .post(format!("{}/v1/processes/{id}/close", self.base))
                .bearer_auth(&self.token)
                .body("{}")
                .send()
                .await,
            Ok(r) if r.status() == 204
        )
    }
}

/// The ids of processes as a long-poll returns them.
pub fn ids(processes: &[Value]) -> Vec<i64> {
    processes.iter().filter_map(|p| p["id"].as_i64()).collect()
}
