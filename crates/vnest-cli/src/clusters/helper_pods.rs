//! The short-lived pods the CLI runs in a tenant's control-plane namespace
//! (restoring a member's volume, reading the backups' volume): their
//! status, what they said when they failed, and making room for one.

use std::time::Instant;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;

use super::wait::POLL;

/// Waits until container `container` of pod `name` (an init container or
/// not) runs, to be attached to; `what` names the pod for people.
pub(crate) async fn until_running(
    pods: &Api<Pod>,
    name: &str,
    container: &str,
    what: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let status = pod_status(pods, name).await?;
        let state = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find(|c| c.name == container)
            .and_then(|c| c.state.clone());
        if let Some(state) = state {
            if state.running.is_some() {
                return Ok(());
            }
            if let Some(done) = state.terminated {
                bail!(
                    "{what}'s step {container} ended before it was given its input: {}",
                    done.message.unwrap_or_default().trim()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not start (phase {}); `kubectl describe pod {name}` in the control-plane namespace tells why",
                status.phase.unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until pod `name` has finished: `Ok` when it succeeded, else what
/// its steps said; `what` names the pod for people.
pub(crate) async fn until_finished(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let status = pod_status(pods, name).await?;
        match status.phase.as_deref() {
            Some("Succeeded") => return Ok(()),
            Some("Failed") => bail!("{what} failed: {}", failure(&status)),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("{what} did not finish in time: {}", failure(&status));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn pod_status(
    pods: &Api<Pod>,
    name: &str,
) -> anyhow::Result<k8s_openapi::api::core::v1::PodStatus> {
    let pod = pods
        .get(name)
        .await
        .with_context(|| format!("reading pod {name}"))?;
    Ok(pod.status.unwrap_or_default())
}

/// What the steps (containers) of a pod said when they ended badly.
fn failure(status: &k8s_openapi::api::core::v1::PodStatus) -> String {
    let steps = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let said: Vec<String> = steps
        .filter_map(|c| {
            let done = c.state.as_ref()?.terminated.as_ref()?;
            (done.exit_code != 0).then(|| {
                format!(
                    "step {} exited {}: {}",
                    c.name,
                    done.exit_code,
                    done.message.clone().unwrap_or_default().trim()
                )
            })
        })
        .collect();
    if said.is_empty() {
        format!("phase {}", status.phase.clone().unwrap_or_default())
    } else {
        said.join("; ")
    }
}

pub(crate) async fn delete_and_wait(
    pods: &Api<Pod>,
    name: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    pods.delete(name, &DeleteParams::default()).await.ok();
    while pods
        .get_opt(name)
        .await
        .with_context(|| format!("reading pod {name}"))?
        .is_some()
    {
        if Instant::now() > deadline {
            bail!("an earlier pod {name} did not go away");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
