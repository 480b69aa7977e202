//! CPU time and memory of the processes a sync costs, read from /proc: the
//! syncer, a tenant's apiserver (found by its container's ID in its
//! cgroup) and the host's apiserver (the one kube-apiserver outside the
//! dev host's node cgroups).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use vnest_api::host_names::{apiserver, labels};

/// Processes whose CPU time a measurement reads.
#[derive(Clone, Debug)]
pub struct Watched {
    pub syncer: Vec<u32>,
    pub tenant_apiserver: Vec<u32>,
    pub host_apiserver: Vec<u32>,
}

/// CPU seconds (user + system) of each watched group, and of the whole
/// machine (every process: etcds, schedulers, kwok, the bench itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub syncer: f64,
    pub tenant_apiserver: f64,
    pub host_apiserver: f64,
    pub machine: f64,
}

impl Cpu {
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            syncer: self.syncer - before.syncer,
            tenant_apiserver: self.tenant_apiserver - before.tenant_apiserver,
            host_apiserver: self.host_apiserver - before.host_apiserver,
            machine: self.machine - before.machine,
        }
    }
}

impl Watched {
    /// The running syncer, the apiserver of the tenant whose control-plane
    /// namespace is `control_plane`, and the host's apiserver.
    pub async fn find(host: &Client, control_plane: &str) -> Watched {
        let pods: Api<Pod> = Api::namespaced(host.clone(), control_plane);
        let selector = format!("{}={}", labels::COMPONENT, apiserver::COMPONENT);
        let containers: Vec<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .filter_map(|c| c.container_id.as_deref())
            .map(|id| id.rsplit("//").next().unwrap_or(id).to_owned())
            .collect();
        let mut watched = Watched {
            syncer: Vec::new(),
            tenant_apiserver: Vec::new(),
            host_apiserver: Vec::new(),
        };
        for (pid, command, cgroup) in processes() {
            if command.ends_with("vnest-syncer") {
                watched.syncer.push(pid);
            } else if command.ends_with("kube-apiserver") {
                if containers.iter().any(|id| cgroup.contains(id.as_str())) {
                    watched.tenant_apiserver.push(pid);
                } else if !cgroup.contains("/vnest-node") {
                    watched.host_apiserver.push(pid);
                }
            }
        }
        eprintln!("processes: {watched:?}");
        assert_eq!(watched.syncer.len(), 1, "one syncer runs: {watched:?}");
        assert!(!watched.tenant_apiserver.is_empty(), "{watched:?}");
        assert_eq!(watched.host_apiserver.len(), 1, "{watched:?}");
        watched
    }

    pub fn cpu(&self) -> Cpu {
        let sum = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p)).sum();
        Cpu {
            syncer: sum(&self.syncer),
            tenant_apiserver: sum(&self.tenant_apiserver),
            host_apiserver: sum(&self.host_apiserver),
            machine: machine_cpu_seconds(),
        }
    }

    /// The syncer's resident memory, in KiB.
    pub fn syncer_rss_kib(&self) -> u64 {
        self.syncer.iter().map(|p| rss_kib(*p)).sum()
    }
}

/// Every process: its PID, the path of its executable (first argument) and
/// its cgroups.
fn processes() -> Vec<(u32, String, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let dir: PathBuf = entry.path();
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            let first = cmdline.split(|b| *b == 0).next()?;
            let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
            Some((pid, String::from_utf8_lossy(first).into_owned(), cgroup))
        })
        .collect()
}

/// User plus system CPU time of `pid`, in seconds (0 once it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command (field 2) may hold spaces; the fields after it do not.
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after field 3.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// CPU seconds of every process running now, summed by command name
/// (`etcd`, `kube-scheduler`, …): where the machine's time went.
pub fn cpu_by_command() -> BTreeMap<String, f64> {
    let mut by = BTreeMap::new();
    for (pid, command, _) in processes() {
        let name = match command.rsplit('/').next().unwrap_or(&command) {
            // Kernel threads have no command line.
            "" => "(kernel threads)".to_owned(),
            name => name.to_owned(),
        };
        *by.entry(name).or_default() += cpu_seconds(pid);
    }
    by
}

/// The commands that took the most CPU between `before` and `after`,
/// largest first: `etcd 3.1 s, kube-scheduler 2.0 s, …`.
pub fn busiest(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut took: Vec<(&String, f64)> = after
        .iter()
        .map(|(name, now)| (name, now - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, seconds)| *seconds >= 0.5)
        .collect();
    took.sort_by(|a, b| b.1.total_cmp(&a.1));
    took.iter()
        .take(10)
        .map(|(name, seconds)| format!("{name} {seconds:.1} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CPU time every core spent busy since boot (all but idle and
/// iowait), in seconds.
fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(total) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user).
    let ticks: u64 = total
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// The machine's cores.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
