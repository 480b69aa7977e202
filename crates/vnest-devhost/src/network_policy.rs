//! NetworkPolicy enforcement on every real node: kube-router's firewall
//! (v2.1.0, built from `tools/upstream/kube-router`), inside the node's
//! network namespace, with its BGP router and service proxy off (kube-proxy
//! stays the service proxy; kube-router's published advisories concern the
//! two parts that stay off).
//!
//! Its identity is a client certificate per node in one group that a
//! read-only ClusterRole is bound to: it watches pods, namespaces, nodes,
//! services, endpoints and NetworkPolicies and writes nothing to the API.
//! Its iptables rules and ipsets live in the node's namespace, so removing
//! the namespace on teardown removes them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use serde_json::json;

use vnest_control_plane::flags::SERVICE_CIDR;

use crate::topology::NodeSpec;

const FIELD_MANAGER: &str = "vnest-devhost";
/// The ClusterRole (and its binding) the enforcer reads the cluster with.
pub const ROLE: &str = "vnest-devhost:network-policy";
/// The group of every node's enforcer certificate.
pub const GROUP: &str = "vnest-devhost:network-policy";
/// The chain kube-router hooks into FORWARD once its first sync is done.
pub const FORWARD_CHAIN: &str = "KUBE-ROUTER-FORWARD";

/// The user name of `node`'s enforcer.
pub fn user(node: &NodeSpec) -> String {
    format!("system:kube-router:{}", node.name())
}

/// kube-router's arguments on `node`: the firewall alone.
pub fn args(node: &NodeSpec, kubeconfig: &str) -> Vec<String> {
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--hostname-override={}", node.name()),
        "--run-firewall=true".into(),
        "--run-router=false".into(),
        "--run-service-proxy=false".into(),
        "--enable-cni=false".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        // No health or metrics listener: nothing in a pod can reach one.
        "--health-port=0".into(),
        "--metrics-port=0".into(),
    ]
}

/// What the enforcer may read, and nothing else.
pub fn rbac() -> anyhow::Result<(ClusterRole, ClusterRoleBinding)> {
    let read = ["get", "list", "watch"];
    let role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": ROLE },
        "rules": [
            { "apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services", "endpoints"], "verbs": read },
            { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read },
            { "apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read },
        ],
    }))?;
    let binding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": ROLE },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": GROUP }],
    }))?;
    Ok((role, binding))
}

/// Applies the enforcer's ClusterRole and binding.
pub async fn install_rbac(client: &Client) -> anyhow::Result<()> {
    let (role, binding) = rbac()?;
    vnest_kube::apply::apply_cluster(client, FIELD_MANAGER, &role)
        .await
        .context("applying the NetworkPolicy enforcer's ClusterRole")?;
    vnest_kube::apply::apply_cluster(client, FIELD_MANAGER, &binding)
        .await
        .context("applying the NetworkPolicy enforcer's ClusterRoleBinding")?;
    Ok(())
}

/// Waits until kube-router has hooked its chain into `node`'s FORWARD chain:
/// from then on, policies are in force there. `alive` fails the wait early
/// when the enforcer died.
pub async fn wait_enforcing(
    node: &NodeSpec,
    timeout: Duration,
    log: &std::path::Path,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let netns = format!("--net=/run/netns/{}", node.name());
    loop {
        alive()?;
        let hooked = crate::command::run("nsenter", &[&netns, "--", "iptables", "-S", "FORWARD"])
            .is_ok_and(|rules| rules.contains(FORWARD_CHAIN));
        if hooked {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "kube-router on {} did not install its firewall within {timeout:?}; see {}",
                node.name(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Takes kube-router's rules out of force on `node` (with kube-router
/// stopped): removes the jumps into its chains from INPUT, FORWARD and
/// OUTPUT, as removing the plugin would. Its own chains and ipsets stay
/// until the node's namespace goes, unreferenced; a new kube-router hooks
/// them in again.
pub fn unhook(node: &NodeSpec) -> anyhow::Result<()> {
    let netns = format!("--net=/run/netns/{}", node.name());
    for chain in ["INPUT", "FORWARD", "OUTPUT"] {
        let listing = crate::command::run(
            "nsenter",
            &[
                &netns,
                "--",
                "iptables",
                "-n",
                "-L",
                chain,
                "--line-numbers",
            ],
        )?;
        // Highest first: deleting a rule renumbers the ones after it.
        for number in hooks(&listing).into_iter().rev() {
            crate::command::run(
                "nsenter",
                &[&netns, "--", "iptables", "-D", chain, &number.to_string()],
            )
            .with_context(|| format!("unhooking kube-router from {chain} on {}", node.name()))?;
        }
    }
    Ok(())
}

/// The rule numbers of `iptables -L CHAIN --line-numbers` that jump into
/// one of kube-router's chains.
fn hooks(listing: &str) -> Vec<u32> {
    listing
        .lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let number = columns.next()?.parse().ok()?;
            let target = columns.next()?;
            target.starts_with("KUBE-ROUTER-").then_some(number)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_firewall_runs_and_it_serves_no_port() {
        let args = args(&NodeSpec::new(2), "/k");
        for expected in [
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--hostname-override=vnest-node2",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--health-port=0",
            "--metrics-port=0",
        ] {
            assert!(args.iter().any(|a| a == expected), "missing {expected}");
        }
    }

    #[test]
    fn only_jumps_into_kube_routers_chains_are_unhooked() {
        let listing = "Chain FORWARD (policy ACCEPT)\n\
num  target     prot opt source               destination\n\
1    KUBE-ROUTER-FORWARD  all  --  0.0.0.0/0  0.0.0.0/0  /* kube-router netpol - TEMCG2JMHZYE7H7T */\n\
2    KUBE-FORWARD  all  --  0.0.0.0/0            0.0.0.0/0\n\
3    KUBE-ROUTER-FORWARD  all  --  0.0.0.0/0  0.0.0.0/0\n";
        assert_eq!(hooks(listing), [1, 3]);
    }

    #[test]
    fn the_enforcer_reads_and_writes_nothing() {
        let (role, binding) = rbac().unwrap();
        for rule in role.rules.unwrap() {
            assert_eq!(rule.verbs, ["get", "list", "watch"]);
        }
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].name, GROUP);
        assert_eq!(binding.role_ref.name, ROLE);
    }
}
