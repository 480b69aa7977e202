//! Waiting on a VirtualCluster with the admin watching: each stage's
//! condition is printed when it changes, with the time since the wait
//! began, and a wait that runs out says in which stage. A wait reads the
//! VirtualCluster again as soon as a watch says it changed (at the latest
//! after [`POLL`]), so a wait ends when what it waits for happens, not up
//! to a poll later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use vnest_api::{Phase, VirtualCluster, VirtualClusterStatus};

use super::explain;

use vnest_api::conditions::STAGES;
/// How often a wait looks at the host again (at the latest, for waits on
/// a VirtualCluster: [`Changes`]).
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// Wakes a wait on one VirtualCluster when a watch reports a change to it,
/// or after [`POLL`] without one (a watch that cannot be made, or breaks,
/// leaves the wait polling; its errors are the next read's to report).
struct Changes(BoxStream<'static, ()>);

impl Changes {
    fn of(api: &Api<VirtualCluster>, name: &str) -> Self {
        let only = watcher::Config::default().fields(&format!("metadata.name={name}"));
        Self(
            watcher(api.clone(), only)
                .default_backoff()
                .map(|_| ())
                .boxed(),
        )
    }

    async fn next(&mut self) {
        // Elapsed (no change) and a change both mean: read it again.
        let _ = tokio::time::timeout(POLL, self.0.next()).await;
    }
}

/// How a wait ended, when it did not end in an error.
pub(crate) enum Outcome {
    Done,
    TimedOut(String),
}

/// Prints progress to stderr until `name` is Ready, Failed (an error) or
/// `timeout` passes.
pub(crate) async fn until_ready(
    api: &Api<VirtualCluster>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    until_ready_and(api, name, Instant::now(), timeout, |_| None).await
}

/// [`until_ready`], and then until `still_waiting` (what a Ready status
/// still lacks, said as what is waited for) says nothing; times are since
/// `started`.
pub(crate) async fn until_ready_and(
    api: &Api<VirtualCluster>,
    name: &str,
    started: Instant,
    timeout: Duration,
    still_waiting: impl Fn(&VirtualClusterStatus) -> Option<String>,
) -> anyhow::Result<Outcome> {
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut pending = "the supervisor to pick it up".to_owned();
    let mut changes = Changes::of(api, name);
    loop {
        let vc = api
            .get_opt(name)
            .await
            .map_err(|e| explain(e, &format!("reading VirtualCluster {name}"), ""))?;
        let Some(vc) = vc else {
            bail!("VirtualCluster {name} was deleted while waiting for it");
        };
        let status = vc.status.unwrap_or_default();
        for stage in STAGES {
            let Some(condition) = status.conditions.iter().find(|c| c.type_ == stage) else {
                continue;
            };
            let line = if condition.status == "True" {
                format!("{stage} ready: {}", condition.message)
            } else {
                format!(
                    "{stage} waiting ({}): {}",
                    condition.reason, condition.message
                )
            };
            if shown.get(stage) != Some(&line) {
                eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
                shown.insert(stage.to_owned(), line.clone());
            }
        }
        match status.phase {
            Some(Phase::Ready) => match still_waiting(&status) {
                None => {
                    eprintln!("[{:>6.1}s] ready", started.elapsed().as_secs_f64());
                    return Ok(Outcome::Done);
                }
                Some(waiting) => pending = waiting,
            },
            Some(Phase::Failed) => {
                let why = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| format!("{}: {}", c.reason, c.message))
                    .unwrap_or_default();
                bail!("VirtualCluster {name} failed: {why}");
            }
            _ => {}
        }
        pending = first_waiting(&status.conditions).unwrap_or(pending);
        if started.elapsed() > timeout {
            return Ok(Outcome::TimedOut(format!(
                "timed out after {} waiting for {pending}",
                humantime::format_duration(Duration::from_secs(timeout.as_secs()))
            )));
        }
        changes.next().await;
    }
}

/// The first stage not ready yet, with its message.
fn first_waiting(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<String> {
    STAGES.iter().find_map(|stage| {
        let condition = conditions.iter().find(|c| c.type_ == *stage)?;
        (condition.status != "True").then(|| format!("{stage}: {}", condition.message))
    })
}

/// Waits until `name` is gone (its finalizer has cleaned up the host).
pub(crate) async fn until_deleted(
    api: &Api<VirtualCluster>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut announced = false;
    let mut changes = Changes::of(api, name);
    loop {
        let vc = api
            .get_opt(name)
            .await
            .map_err(|e| explain(e, &format!("reading VirtualCluster {name}"), ""))?;
        if vc.is_none() {
            eprintln!("[{:>6.1}s] deleted", started.elapsed().as_secs_f64());
            return Ok(Outcome::Done);
        }
        if !announced {
            eprintln!(
                "[{:>6.1}s] removing the control plane and the host namespaces",
                started.elapsed().as_secs_f64()
            );
            announced = true;
        }
        if started.elapsed() > timeout {
            return Ok(Outcome::TimedOut(format!(
                "timed out after {} waiting for VirtualCluster {name} to be deleted (its finalizer is still cleaning up; is the supervisor running?)",
                humantime::format_duration(Duration::from_secs(timeout.as_secs()))
            )));
        }
        changes.next().await;
    }
}
