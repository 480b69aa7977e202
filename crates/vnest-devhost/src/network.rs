//! The host's network: a bridge on the machine, one network namespace per
//! node wired to it by a veth pair, and routes to each node's pod subnet.

use crate::command::{run, run_quietly};
use crate::topology::{BRIDGE, HOST_IP, NODE_SUBNET_PREFIX, NodeSpec};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Creates the bridge and enables forwarding; returns the forwarding
/// setting it found, to restore on teardown.
pub fn create_bridge() -> anyhow::Result<String> {
    let previous = std::fs::read_to_string(IP_FORWARD).unwrap_or_else(|_| "0".into());
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    let cidr = format!("{HOST_IP}/{NODE_SUBNET_PREFIX}");
    run("ip", &["addr", "add", &cidr, "dev", BRIDGE])?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    std::fs::write(IP_FORWARD, "1")?;
    Ok(previous.trim().to_owned())
}

/// A network namespace for `node`, its veth pair and the route to its pods.
pub fn create_node_network(node: &NodeSpec) -> anyhow::Result<()> {
    let ns = node.name();
    let veth = node.host_veth();
    run("ip", &["netns", "add", &ns])?;
    run(
        "ip",
        &[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    )?;
    run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
    let cidr = format!("{}/{NODE_SUBNET_PREFIX}", node.ip());
    let host_ip = HOST_IP.to_string();
    for args in [
        vec!["addr", "add", cidr.as_str(), "dev", "eth0"],
        vec!["link", "set", "eth0", "up"],
        vec!["link", "set", "lo", "up"],
        vec!["route", "add", "default", "via", host_ip.as_str()],
    ] {
        let mut full = vec!["-n", ns.as_str()];
        full.extend(args);
        run("ip", &full)?;
    }
    run(
        "ip",
        &[
            "route",
            "add",
            &node.pod_cidr(),
            "via",
            &node.ip().to_string(),
        ],
    )?;
    // Pods reach each other and the host through the node's namespace; the
    // NetworkPolicy enforcer's iptables rules see traffic between two pods of
    // one node only when bridged frames pass through iptables.
    for setting in [
        "net.ipv4.ip_forward=1",
        "net.bridge.bridge-nf-call-iptables=1",
    ] {
        run("ip", &["netns", "exec", &ns, "sysctl", "-qw", setting])?;
    }
    Ok(())
}

/// Removes what [`create_node_network`] made; missing pieces are fine.
pub fn delete_node_network(node: &NodeSpec) {
    run_quietly("ip", &["route", "del", &node.pod_cidr()]);
    run_quietly("ip", &["link", "del", &node.host_veth()]);
    run_quietly("ip", &["netns", "del", &node.name()]);
}

/// Removes the bridge and restores the forwarding setting.
pub fn delete_bridge(previous_forwarding: Option<&str>) {
    run_quietly("ip", &["link", "del", BRIDGE]);
    if let Some(previous) = previous_forwarding {
        let _ = std::fs::write(IP_FORWARD, previous);
    }
}

/// The network namespaces of nodes that exist now (also ones a crashed
/// run left behind).
pub fn existing_node_namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("vnest-node"))
        .map(str::to_owned)
        .collect()
}
