//! Drives the real `vnest` binary: `vnest local up/list/down` against the real
//! upstream binaries, and plain kubectl with the kubeconfig it writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vnest_local::UpstreamBinaries;
use vnest_tests::{process_is_gone, unique_name, upstream_binaries};

/// One isolated state directory per test, removed at the end.
struct Env {
    state: tempfile::TempDir,
    bin_dir: PathBuf,
}

impl Env {
    fn new() -> Self {
        let UpstreamBinaries::Dir(bin_dir) = upstream_binaries() else {
            panic!("tests use a directory of upstream binaries");
        };
        Self {
            state: tempfile::tempdir().unwrap(),
            bin_dir,
        }
    }

    fn vnest(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vnest"));
        c.env("VNEST_STATE_DIR", self.state.path())
            .env("VNEST_UPSTREAM_BIN_DIR", &self.bin_dir)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.vnest().args(args).output().unwrap()
    }

    /// `vnest local up NAME --kubeconfig-out FILE`, which must succeed.
    fn up(&self, name: &str, kubeconfig: &Path) -> Output {
        let up = self.run(&[
            "local",
            "up",
            name,
            "--kubeconfig-out",
            kubeconfig.to_str().unwrap(),
        ]);
        assert!(up.status.success(), "up failed: {}", stderr(&up));
        up
    }

    fn plane_dir(&self, name: &str) -> PathBuf {
        self.state.path().join("local").join(name)
    }

    fn state(&self, name: &str) -> serde_json::Value {
        let bytes = std::fs::read(self.plane_dir(name).join("state.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn pids(&self, name: &str) -> Vec<u32> {
        let state = self.state(name);
        let mut pids = vec![state["pid"].as_u64().unwrap() as u32];
        for c in state["components"].as_array().unwrap() {
            pids.push(c[1].as_u64().unwrap() as u32);
        }
        pids
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Whatever a failed test left running.
        let _ = self.run(&["local", "down", "--all"]);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| !process_is_gone(p)) {
        assert!(Instant::now() < deadline, "still running: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_gives_a_kubeconfig_kubectl_can_use_and_down_removes_everything() {
    let env = Env::new();
    let name = unique_name("cli");
    let out_file = env.state.path().join("my.kubeconfig");
    let up = env.up(&name, &out_file);
    assert_eq!(
        stdout(&up).trim(),
        out_file.to_str().unwrap(),
        "stdout is the kubeconfig path"
    );
    let progress = stderr(&up);
    for step in [
        "issuing certificates",
        "etcd ready",
        "kube-apiserver ready",
        "kube-controller-manager ready",
    ] {
        assert!(
            progress.contains(step),
            "progress lacks {step:?}:\n{progress}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let kubectl = |args: &[&str]| {
        Command::new(env.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&out_file)
            .args(args)
            .output()
            .unwrap()
    };
    let created = kubectl(&["create", "namespace", "from-kubectl"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let listed = kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stdout(&listed).contains("namespace/from-kubectl"),
        "{}",
        stdout(&listed)
    );

    let list = env.run(&["local", "list", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["name"], name.as_str());
    assert_eq!(rows[0]["status"], "Running");
    let table = stdout(&env.run(&["local", "list"]));
    assert!(
        table.starts_with("NAME") && table.contains(&name),
        "{table}"
    );

    let pids = env.pids(&name);
    assert_eq!(pids.len(), 4, "serve, etcd, apiserver, controller-manager");
    let down = env.run(&["local", "down", &name]);
    assert!(down.status.success(), "{}", stderr(&down));
    wait_gone(&pids);
    assert!(!env.plane_dir(&name).exists(), "state left behind");
    let after = kubectl(&["get", "namespaces"]);
    assert!(
        !after.status.success(),
        "the apiserver still answers after down"
    );
}

#[test]
fn a_killed_serving_process_takes_its_components_with_it() {
    let env = Env::new();
    let name = unique_name("kill");
    let up = env.run(&["local", "up", &name]);
    assert!(up.status.success(), "{}", stderr(&up));
    let pids = env.pids(&name);
    // SIGKILL: no clean-up code runs; PR_SET_PDEATHSIG must do the work.
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).unwrap();
    wait_gone(&pids);

    let list = env.run(&["local", "list", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "Dead");
    let again = env.run(&["local", "up", &name]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains(&format!("vnest local down {name}")),
        "{}",
        stderr(&again)
    );
    let down = env.run(&["local", "down", &name]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(!env.plane_dir(&name).exists());
}

#[test]
fn a_component_that_dies_marks_the_plane_failed_and_keeps_its_logs() {
    let env = Env::new();
    let name = unique_name("fail");
    let up = env.run(&["local", "up", &name]);
    assert!(up.status.success(), "{}", stderr(&up));
    let pids = env.pids(&name);
    let etcd = env.state(&name)["components"][0].clone();
    assert_eq!(etcd[0], "etcd");
    kill(
        Pid::from_raw(etcd[1].as_u64().unwrap() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(&pids);

    let list = env.run(&["local", "list", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "Failed", "{rows}");
    let error = env.state(&name)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("etcd exited"), "{error}");
    assert!(
        env.plane_dir(&name).join("plane/logs/etcd.log").exists(),
        "logs kept for a post-mortem"
    );
    let down = env.run(&["local", "down", &name]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stderr(&down).contains("which had failed"),
        "{}",
        stderr(&down)
    );
    assert!(!env.plane_dir(&name).exists());
}

#[test]
fn ctrl_c_during_up_leaves_nothing_behind() {
    let env = Env::new();
    let name = unique_name("int");
    let mut up = env
        .vnest()
        .args(["local", "up", &name])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the apiserver is starting, i.e. with processes running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pids = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "up never got to the apiserver");
        if let Ok(bytes) = std::fs::read(env.plane_dir(&name).join("state.json")) {
            let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let steps = state["steps"].to_string();
            if steps.contains("starting kube-apiserver") {
                pids.push(state["pid"].as_u64().unwrap() as u32);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let components = processes_under(&env.plane_dir(&name));
    kill(Pid::from_raw(up.id() as i32), Signal::SIGINT).unwrap();
    let status = up.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    pids.extend(components);
    wait_gone(&pids);
    assert!(!env.plane_dir(&name).exists(), "state left behind");
}

/// The processes whose command line names a path under `dir`.
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn two_ups_racing_for_one_name_start_it_once() {
    let env = Env::new();
    let name = unique_name("race");
    let spawn = || {
        env.vnest()
            .args(["local", "up", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let winners = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "a: {}\nb: {}", stderr(&a), stderr(&b));
    let loser = if a.status.success() { &b } else { &a };
    let message = stderr(loser);
    assert!(
        message.contains("is being started by another") || message.contains("already runs"),
        "{message}"
    );
    let down = env.run(&["local", "down", &name]);
    assert!(down.status.success(), "{}", stderr(&down));
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let env = Env::new();
    let cases: [(&[&str], &str); 3] = [
        (
            &["local", "up", "Bad_Name"],
            "lower-case letters, digits and '-'",
        ),
        (
            &["local", "down", "no-such-plane"],
            "there is no local control plane named",
        ),
        (
            &["local", "up", "x", "--timeout", "soon"],
            "invalid value 'soon'",
        ),
    ];
    for (args, expected) in cases {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let missing = env
        .vnest()
        .env("VNEST_UPSTREAM_BIN_DIR", "/nonexistent")
        .args(["local", "up", "nobins"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("tools/upstream/build.sh"),
        "{}",
        stderr(&missing)
    );
    assert!(
        !env.state.path().join("local").exists(),
        "bad input created state"
    );
}

/// `vnest map` against a real apiserver standing in for a host: a tenant
/// ConfigMap's host name (the syncer's naming) is found on the host, and
/// the host copy names its tenant object and VirtualCluster.
#[test]
fn map_finds_a_host_copy_and_leads_back_to_its_tenant_object() {
    use vnest_api::host_names::{HostNamespaceRole, host_namespace, labels};
    let env = Env::new();
    let name = unique_name("map");
    let kubeconfig = env.state.path().join("host.kubeconfig");
    env.up(&name, &kubeconfig);

    // What the supervisor and the syncer would have written on a host.
    let wl = host_namespace("tenants", "shop", HostNamespaceRole::Workloads);
    let host_copy = vnest_api::host_copies::host_name("web", "settings");
    let yaml = serde_json::json!({
        "apiVersion": "v1", "kind": "List", "items": [
            { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": wl, "labels": {
                labels::VIRTUAL_CLUSTER: "shop", labels::VIRTUAL_CLUSTER_NAMESPACE: "tenants" } } },
            { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": host_copy, "namespace": wl,
                "annotations": vnest_api::host_copies::origin_annotations("web", "settings") } },
            { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "hosts-own", "namespace": wl } },
        ]
    });
    let file = env.state.path().join("host-objects.json");
    std::fs::write(&file, yaml.to_string()).unwrap();
    let applied = Command::new(env.bin_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", stderr(&applied));

    let with_host = |args: &[&str]| {
        env.vnest()
            .env("KUBECONFIG", &kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    let down = with_host(&[
        "map",
        "cm/settings",
        "-n",
        "web",
        "--cluster",
        "shop",
        "--cluster-namespace",
        "tenants",
    ]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(
        stdout(&down).trim(),
        format!("configmap/{host_copy} in namespace {wl} on the host")
    );
    let missing = with_host(&[
        "map",
        "pod/nope",
        "-n",
        "web",
        "--cluster",
        "shop",
        "--cluster-namespace",
        "tenants",
    ]);
    assert_eq!(missing.status.code(), Some(3), "{}", stdout(&missing));
    assert!(stdout(&missing).contains("(not there now)"));
    let up_again = with_host(&[
        "map",
        "--host",
        &format!("configmap/{host_copy}"),
        "-n",
        &wl,
    ]);
    assert!(up_again.status.success(), "{}", stderr(&up_again));
    assert_eq!(
        stdout(&up_again).trim(),
        "configmap/settings in namespace web of VirtualCluster tenants/shop"
    );
    let refused = with_host(&["map", "deployment/web", "--cluster", "shop"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("does not mirror"),
        "{}",
        stderr(&refused)
    );
    let not_ours = with_host(&["map", "--host", "configmap/hosts-own", "-n", &wl]);
    assert!(!not_ours.status.success());
    assert!(
        stderr(&not_ours).contains("is not a copy the syncer made"),
        "{}",
        stderr(&not_ours)
    );

    let down = env.run(&["local", "down", &name]);
    assert!(down.status.success(), "{}", stderr(&down));
}
