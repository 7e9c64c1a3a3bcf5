//! The fault injector: one fault at a time, at random (from the run's seed), each logged with
//! when it started and ended.

use crate::cluster::{Postgres, Replica};
use crate::plan::COLONY;
use crate::records::now_us;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// `kill -9` of a coordinator replica; restarted on the same port after a moment.
    KillReplica,
    /// `kill -9` of an executor child process holding work; a new executor replaces it.
    KillExecutor,
    /// `pg_ctl restart -m fast`.
    PgFastRestart,
    /// `pg_ctl restart -m immediate`: a crash, recovered from WAL.
    PgCrashRestart,
    /// `pg_terminate_backend` of coordinator backends (pool and LISTEN connections).
    TerminateCoordinatorBackends,
    /// `pg_terminate_backend` of the database's colony_assign worker (relay and reaper).
    TerminateWorker,
    /// `pg_terminate_backend` of SQL-direct executors' sessions.
    TerminateExecutorBackends,
    /// The link between a replica and PostgreSQL blackholed (faultproxy), then healed.
    Blackhole,
    /// `pause()` of the colony, then `resume()`.
    Pause,
}

pub const ALL: [Fault; 9] = [
    Fault::KillReplica,
    Fault::KillExecutor,
    Fault::PgFastRestart,
    Fault::PgCrashRestart,
    Fault::TerminateCoordinatorBackends,
    Fault::TerminateWorker,
    Fault::TerminateExecutorBackends,
    Fault::Blackhole,
    Fault::Pause,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillReplica => "kill -9 replica",
            Fault::KillExecutor => "kill -9 executor",
            Fault::PgFastRestart => "PostgreSQL fast restart",
            Fault::PgCrashRestart => "PostgreSQL crash restart",
            Fault::TerminateCoordinatorBackends => "terminate coordinator backends",
            Fault::TerminateWorker => "terminate worker backend",
            Fault::TerminateExecutorBackends => "terminate SQL executor backends",
            Fault::Blackhole => "blackhole replica-PostgreSQL",
            Fault::Pause => "pause/resume colony",
        }
    }

    /// How often it is drawn, relative to the others.
    fn weight(self) -> u32 {
        match self {
            Fault::KillReplica | Fault::KillExecutor | Fault::Blackhole => 3,
            Fault::TerminateCoordinatorBackends | Fault::Pause => 2,
            _ => 1,
        }
    }
}

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub fault: Fault,
    pub detail: String,
    pub start: i64,
    pub end: i64,
    /// For a killed executor: its name.
    pub executor: Option<String>,
}

/// The first faults go through every kind once (shuffled), so even a short run has each;
/// then they are drawn by weight.
pub fn draw(rng: &mut StdRng, done: usize, order: &[Fault]) -> Fault {
    if done < order.len() {
        return order[done];
    }
    let total: u32 = ALL.iter().map(|f| f.weight()).sum();
    let mut pick = rng.random_range(0..total);
    for f in ALL {
        if pick < f.weight() {
            return f;
        }
        pick -= f.weight();
    }
    unreachable!()
}

fn ms(range: (u64, u64), rng: &mut StdRng) -> Duration {
    Duration::from_millis(rng.random_range(range.0..=range.1))
}

/// Faults on the cluster itself (everything but executor kills, which main.rs does since it
/// owns the child executors).
pub async fn inject(
    fault: Fault,
    rng: &mut StdRng,
    pg: &Postgres,
    replicas: &mut [Replica],
    outage: (u64, u64),
) -> Injected {
    let start = now_us();
    let detail = match fault {
        Fault::KillReplica => {
            let r = rng.random_range(0..replicas.len());
            let down = ms((300, 3000), rng);
            replicas[r].kill9().await;
            tokio::time::sleep(down).await;
            replicas[r].start().await;
            format!("r{r}, down {down:?} before its restart")
        }
        Fault::PgFastRestart => format!("took {:?}", pg.restart("fast").await),
        Fault::PgCrashRestart => format!("took {:?}", pg.restart("immediate").await),
        Fault::TerminateCoordinatorBackends => {
            let n = pg
                .terminate("application_name LIKE 'colony-coordinator%' AND random() < 0.5")
                .await;
            format!("{n} backends")
        }
        Fault::TerminateWorker => {
            let n = pg.terminate("backend_type = 'colony_assign worker'").await;
            format!("{n} backends")
        }
        Fault::TerminateExecutorBackends => {
            let n = pg
                .terminate("application_name LIKE 'chaos-sql %' AND random() < 0.5")
                .await;
            format!("{n} backends")
        }
        Fault::Blackhole => {
            let r = rng.random_range(0..replicas.len());
            let cut = ms(outage, rng);
            replicas[r].proxy.blackhole().await;
            tokio::time::sleep(cut).await;
            replicas[r].proxy.heal().await;
            format!("r{r} for {cut:?}")
        }
        Fault::Pause => {
            let paused = ms(outage, rng);
            let admin = pg.admin().await;
            let _ = admin
                .execute("SELECT colony_assign.pause($1)", &[&COLONY])
                .await;
            // The window the checker leaves out of assignment latency starts when pause()
            // has committed and ends before resume() is sent: never wider than the pause.
            let start = now_us();
            tokio::time::sleep(paused).await;
            let end = now_us();
            resume(pg).await;
            return Injected {
                fault,
                detail: format!("for {paused:?}"),
                start,
                end,
                executor: None,
            };
        }
        Fault::KillExecutor => unreachable!("main.rs kills executors"),
    };
    Injected {
        fault,
        detail,
        start,
        end: now_us(),
        executor: None,
    }
}

/// `resume()` the colony, retried until it succeeds (a colony left paused would stop the run).
pub async fn resume(pg: &Postgres) {
    loop {
        let admin = pg.admin().await;
        if admin
            .execute("SELECT colony_assign.resume($1)", &[&COLONY])
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
