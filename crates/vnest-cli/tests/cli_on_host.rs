//! The `vnest` binary end to end on a real development host: install,
//! create with --wait, list/describe/kubeconfig/connect, pause/resume,
//! delete, snapshot and restore (over the cluster, and into a new one),
//! `vnest run` passing its command's exit code through and leaving
//! nothing behind (also when interrupted with SIGINT and SIGTERM), every
//! error case with its exit code, the kubectl plugin, and uninstall.
//!
//! vnest's image is made from the `vnest-supervisor` and `vnest-syncer`
//! binaries next to `vnest` in the target directory (`cargo test
//! --workspace` builds them). Needs root and the packages of
//! tools/host/install-prerequisites.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::ListParams;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vnest_api::VirtualCluster;
use vnest_api::host_copies;
use vnest_api::host_names::{HostNamespaceRole, host_namespace, labels};
use vnest_devhost::topology::NodeSpec;
use vnest_local::UpstreamBinaries;
use vnest_tests::{HostSlot, TestHost, kubectl, upstream_binaries};

const TENANTS: &str = "tenants";
const POOL: &str = "vnest.dev/pool=ci";

/// Runs the real `vnest` against the host.
struct Cli {
    admin: PathBuf,
    path: String,
    work: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vnest"));
        c.args(args)
            .env("KUBECONFIG", &self.admin)
            .env("PATH", &self.path)
            .env_remove("VNEST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// (exit code, stdout, stderr)
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        );
        eprintln!("$ vnest {}\n{out}{err}", args.join(" "));
        (status.code().unwrap_or(-1), out, err)
    }

    /// Starts `vnest args` with its stderr collected as it comes.
    fn spawn(&self, args: &[&str]) -> (Child, Arc<Mutex<String>>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let said = Arc::new(Mutex::new(String::new()));
        let reader = BufReader::new(child.stderr.take().unwrap());
        let sink = said.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                eprintln!("vnest: {line}");
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        (child, said)
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{what} after {:.1}s", started.elapsed().as_secs_f64());
}

fn exit_code(child: &mut Child, timeout: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(started.elapsed() < timeout, "vnest did not exit in time");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host namespaces of VirtualCluster `tenants/name`.
async fn host_namespaces_of(client: &kube::Client, name: &str) -> Vec<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .list(&ListParams::default().labels(&format!("{}={name}", labels::VIRTUAL_CLUSTER)))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect()
}

async fn nothing_left_of(client: &kube::Client, name: &str) {
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    assert!(
        clusters.get_opt(name).await.unwrap().is_none(),
        "VirtualCluster {name} is gone"
    );
    let started = Instant::now();
    loop {
        let left = host_namespaces_of(client, name).await;
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "host namespaces of {name} left: {left:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `vnest run -- sleep`, interrupted by `signal` once the command runs:
/// vnest exits 128+signal and the cluster is gone.
async fn interrupted_run_leaves_nothing(
    cli: &Cli,
    client: &kube::Client,
    name: &str,
    signal: Signal,
) {
    let (mut child, said) = cli.spawn(&[
        "run", "--name", name, "-n", TENANTS, "--pool", POOL, "--", "sleep", "600",
    ]);
    wait_for(
        &format!("{name}: the command runs"),
        Duration::from_secs(300),
        || said.lock().unwrap().contains("] ready"),
    );
    std::thread::sleep(Duration::from_secs(2));
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let code = exit_code(&mut child, Duration::from_secs(360));
    assert_eq!(
        code,
        128 + signal as i32,
        "{name}: {}",
        said.lock().unwrap()
    );
    assert!(said.lock().unwrap().contains("deleting VirtualCluster"));
    nothing_left_of(client, name).await;
}

/// `vnest verify` passes on a fresh cluster; with the host's enforcer
/// stopped (every policy still in place) it exits 8 and names the paths
/// that opened; with the workloads' NetworkPolicies deleted it names the
/// missing policies too. (Instance metadata is pointed at an unused address
/// of the host's bridge: no probe may leave this machine, even when a
/// policy is missing.)
async fn verify_proves_isolation_and_names_what_breaks_it(
    cli: &Cli,
    client: &kube::Client,
    host: &mut TestHost,
) {
    let verify = [
        "verify",
        "a",
        "-n",
        TENANTS,
        "--probe-image",
        vnest_devhost::images::BUSYBOX_IMAGE,
        "--metadata-address",
        "172.30.0.254",
    ];
    let (code, out, err) = cli.run(&verify);
    eprintln!("vnest verify:\n{out}{err}");
    assert_eq!(code, 0, "a fresh cluster verifies: {out}{err}");
    for part in [
        "vnest-workloads-isolate present",
        "vnest-workloads-egress present",
        "host apiserver Service is closed",
        "kubelet of vnest-node1 is closed",
        "its own etcd",
        "T1552.005",
        ", 0 failed",
    ] {
        assert!(out.contains(part), "verify shows {part:?}: {out}");
    }
    let (code, json, _) = cli.run(&[&verify[..], &["-o", "json"]].concat());
    assert_eq!(code, 0);
    let checks: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(checks.iter().all(|c| c["passed"] == true), "{json}");

    // Policies in place but nothing enforcing them: only connections tell.
    host.stop_network_policy().await;
    let (code, out, err) = cli.run(&verify);
    host.enforce_network_policy().await;
    eprintln!("vnest verify with the enforcer stopped:\n{out}{err}");
    assert_eq!(code, 8, "{out}{err}");
    let failed: Vec<&str> = out.lines().filter(|l| l.contains("FAIL")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("kubelet of") && l.contains("REACHABLE")),
        "{out}"
    );
    assert!(
        failed.iter().all(|l| !l.contains(" present")),
        "every policy is still present: {out}"
    );

    let workloads = vnest_api::host_names::host_namespace(
        TENANTS,
        "a",
        vnest_api::host_names::HostNamespaceRole::Workloads,
    );
    let policies: kube::Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        kube::Api::namespaced(client.clone(), &workloads);
    for policy in vnest_api::pod_network::WORKLOADS_POLICIES {
        policies.delete(policy, &Default::default()).await.unwrap();
    }
    let (code, out, err) = cli.run(&verify);
    eprintln!("vnest verify without the workloads' policies:\n{out}{err}");
    assert_eq!(code, 8, "{out}{err}");
    let failed: Vec<&str> = out.lines().filter(|l| l.contains("FAIL")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("vnest-workloads-egress present")),
        "{out}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.contains("kubelet of") && l.contains("REACHABLE")),
        "{out}"
    );
}

/// What the supervisor serves at `:8080/metrics`.
/// Whether host ConfigMap copy of tenant `default/name` exists for
/// VirtualCluster tenants/`cluster`.
async fn host_copy_exists(client: &kube::Client, cluster: &str, name: &str) -> bool {
    let workloads = host_namespace(TENANTS, cluster, HostNamespaceRole::Workloads);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &workloads);
    maps.get_opt(&host_copies::host_name("default", name))
        .await
        .unwrap()
        .is_some()
}

/// `vnest snapshot` of a running tenant, then `vnest restore` over it and
/// into a new cluster: what was written after the snapshot is gone from
/// the tenant and from the host, what was before is back, the old
/// kubeconfig keeps working; bad files and a running cluster are refused.
async fn snapshot_and_restore_bring_back_the_tenants_state(
    cli: &Cli,
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    etcdutl: &std::path::Path,
) {
    let (ok, _, err) = kubectl(
        kubeconfig,
        &["create", "configmap", "before", "--from-literal=k=1"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        kubeconfig,
        &[
            "create",
            "secret",
            "generic",
            "sealed",
            "--from-literal=k=1",
        ],
    );
    assert!(ok, "{err}");
    let snapshot = cli.work.join("a.db");
    let (code, out, err) = cli.run(&[
        "snapshot",
        "a",
        "-n",
        TENANTS,
        "--out",
        snapshot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sha256"), "{out}");
    assert!(err.contains("taking a snapshot"), "{err}");
    assert!(
        cli.work.join("a.db.encryption").is_file(),
        "the keys that sealed its Secrets are kept beside it"
    );
    // etcd's own tool reads it, checksum included.
    let status = Command::new(etcdutl)
        .args([
            "snapshot",
            "status",
            snapshot.to_str().unwrap(),
            "-w",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "etcdutl snapshot status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (code, _, err) = cli.run(&[
        "snapshot",
        "a",
        "-n",
        TENANTS,
        "--out",
        snapshot.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "an existing file is never overwritten");
    assert!(err.contains("exists"), "{err}");
    assert!(
        !cli.work.join("a.db.partial").exists(),
        "no partial file is left"
    );
    // A scheduled snapshot taken now holds the same state: the copy below
    // is restored from it.
    let backup = scheduled_snapshots_are_kept_and_fetched(cli, client).await;

    // Written after the snapshot: gone once it is restored.
    let (ok, _, err) = kubectl(
        kubeconfig,
        &["create", "configmap", "after", "--from-literal=k=2"],
    );
    assert!(ok, "{err}");
    wait_for("the host copy of 'after'", Duration::from_secs(60), || {
        futures_lite_block(host_copy_exists(client, "a", "after"))
    });

    // Bad files are refused before anything changes, with the reason.
    let corrupt = cli.work.join("corrupt.db");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&corrupt, bytes).unwrap();
    let (code, _, err) = cli.run(&[
        "restore",
        "a",
        "-n",
        TENANTS,
        "--from",
        corrupt.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("corrupt"), "{err}");
    let (code, _, err) = cli.run(&[
        "restore",
        "a",
        "-n",
        TENANTS,
        "--from",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not an etcd snapshot"), "{err}");
    let (code, _, err) = cli.run(&[
        "restore",
        "a",
        "-n",
        TENANTS,
        "--from",
        snapshot.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "a running cluster is not restored over");
    assert!(err.contains("vnest pause a"), "{err}");

    // Over the paused cluster: resumed and Ready with the snapshot's state.
    let (code, _, _) = cli.run(&["pause", "a", "-n", TENANTS]);
    assert_eq!(code, 0);
    let cp = host_namespace(TENANTS, "a", HostNamespaceRole::ControlPlane);
    wait_for(
        "a paused cluster's backup CronJob to be suspended",
        Duration::from_secs(60),
        || {
            let (_, suspended, _) = kubectl(
                &cli.admin,
                &[
                    "get",
                    "cronjob",
                    "etcd-backup",
                    "-n",
                    &cp,
                    "-o",
                    "jsonpath={.spec.suspend}",
                ],
            );
            suspended == "true"
        },
    );
    let (code, _, err) = cli.run(&[
        "restore",
        "a",
        "-n",
        TENANTS,
        "--from",
        snapshot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("restored from") && err.contains("] ready"),
        "{err}"
    );
    let (ok, out, err) = kubectl(
        kubeconfig,
        &["get", "configmap", "before", "-o", "jsonpath={.data.k}"],
    );
    assert!(
        ok && out == "1",
        "the snapshot's object is back, through the old kubeconfig: {out}{err}"
    );
    let (ok, _, err) = kubectl(kubeconfig, &["get", "configmap", "after"]);
    assert!(!ok && err.contains("not found"), "{err}");
    let started = Instant::now();
    while host_copy_exists(client, "a", "after").await {
        if started.elapsed() > Duration::from_secs(90) {
            let cp = host_namespace(TENANTS, "a", HostNamespaceRole::ControlPlane);
            let (_, logs, _) = kubectl(
                &cli.admin,
                &["logs", "deployment/syncer", "-n", &cp, "--tail=80"],
            );
            panic!("the host copy of 'after' is still there after 90 s; the syncer said:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the host copy of 'after' went {:.1}s after the restored cluster was Ready",
        started.elapsed().as_secs_f64()
    );
    assert!(host_copy_exists(client, "a", "before").await);
    let (ok, _, err) = kubectl(kubeconfig, &["create", "configmap", "after-restore"]);
    assert!(ok, "the restored cluster takes writes: {err}");

    // Into a new cluster without the keys that sealed the snapshot's
    // Secrets: refused before anything is made.
    let keyless = cli.work.join("keyless.db");
    std::fs::copy(&snapshot, &keyless).unwrap();
    let (code, _, err) = cli.run(&[
        "restore",
        "keyless",
        "-n",
        TENANTS,
        "--from",
        keyless.to_str().unwrap(),
        "--pool",
        POOL,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("keyless.db.encryption"), "{err}");
    assert!(
        clusters_api(client)
            .get_opt("keyless")
            .await
            .unwrap()
            .is_none(),
        "nothing was made"
    );

    // Into a new cluster, created from the flags, from the scheduled
    // snapshot fetched above.
    let copy_kubeconfig = cli.work.join("copy.kubeconfig");
    let (code, _, err) = cli.run(&[
        "restore",
        "a-copy",
        "-n",
        TENANTS,
        "--from",
        backup.to_str().unwrap(),
        "--pool",
        POOL,
        "--expose",
        "node-port",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("created, paused"), "{err}");
    let (code, _, err) = cli.run(&[
        "kubeconfig",
        "a-copy",
        "-n",
        TENANTS,
        "--out",
        copy_kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (ok, out, err) = kubectl(
        &copy_kubeconfig,
        &["get", "configmap", "before", "-o", "jsonpath={.data.k}"],
    );
    assert!(
        ok && out == "1",
        "the copy has the snapshot's objects: {out}{err}"
    );
    let (ok, out, err) = kubectl(
        &copy_kubeconfig,
        &["get", "secret", "sealed", "-o", "jsonpath={.data.k}"],
    );
    assert!(
        ok && out == "MQ==",
        "the copy reads Secrets sealed with the original's key: {out}{err}"
    );
    wait_for(
        "the copy's host copy of 'before'",
        Duration::from_secs(90),
        || futures_lite_block(host_copy_exists(client, "a-copy", "before")),
    );
    let (code, _, err) = cli.run(&["delete", "a-copy", "-n", TENANTS, "--wait"]);
    assert_eq!(code, 0, "{err}");
}

/// `spec.backup` on cluster `a`: its CronJob's runs (three, asked for now
/// rather than waited for) each leave a verified snapshot, the newest two
/// are kept, `vnest backups` lists them and fetches the newest with its
/// encryption file. Returns the fetched file.
async fn scheduled_snapshots_are_kept_and_fetched(cli: &Cli, client: &kube::Client) -> PathBuf {
    let cp = host_namespace(TENANTS, "a", HostNamespaceRole::ControlPlane);
    let (code, _, err) = cli.run(&["backups", "a", "-n", TENANTS]);
    assert_eq!(code, 1, "no spec.backup yet");
    assert!(err.contains("spec.backup"), "{err}");
    clusters_api(client)
        .patch(
            "a",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "spec": { "backup": { "schedule": "0 0 1 1 *", "keep": 2, "storage": "1Gi" } }
            })),
        )
        .await
        .unwrap();
    wait_for("the backup CronJob", Duration::from_secs(60), || {
        kubectl(&cli.admin, &["get", "cronjob", "etcd-backup", "-n", &cp]).0
    });
    for run in 1..=3 {
        let job = format!("asked-{run}");
        let (ok, _, err) = kubectl(
            &cli.admin,
            &[
                "create",
                "job",
                &job,
                "--from=cronjob/etcd-backup",
                "-n",
                &cp,
            ],
        );
        assert!(ok, "{err}");
        let started = Instant::now();
        let outcome = loop {
            let (_, counts, _) = kubectl(
                &cli.admin,
                &[
                    "get",
                    &format!("job/{job}"),
                    "-n",
                    &cp,
                    "-o",
                    "jsonpath={.status.succeeded},{.status.failed}",
                ],
            );
            if counts.starts_with('1')
                || counts.contains(",1")
                || started.elapsed() > Duration::from_secs(180)
            {
                break counts;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let (_, logs, _) = kubectl(&cli.admin, &["logs", &format!("job/{job}"), "-n", &cp]);
        assert!(
            outcome.starts_with("1,"),
            "backup run {run} succeeded ({outcome:?} succeeded,failed after {:?}):\n{logs}",
            started.elapsed()
        );
        eprintln!(
            "backup run {run} took {:.1}s",
            started.elapsed().as_secs_f64()
        );
        assert!(logs.contains("snapshot written and checked"), "{logs}");
        if run == 3 {
            assert!(
                logs.contains("removed=/var/lib/vnest/backups/a-2"),
                "the oldest beyond 2 went: {logs}"
            );
        }
        // Snapshots are named by the second they were taken.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (code, out, err) = cli.run(&["backups", "a", "-n", TENANTS]);
    assert_eq!(code, 0, "{err}");
    let listed: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(listed.len(), 2, "keep: 2 — {out}");
    assert!(
        listed
            .iter()
            .all(|n| n.starts_with("a-2") && n.ends_with("Z.db")),
        "{out}"
    );
    let newest = listed[1];
    let fetched = cli.work.join("scheduled.db");
    let (code, out, err) = cli.run(&[
        "backups",
        "a",
        "-n",
        TENANTS,
        "--fetch",
        newest,
        "--out",
        fetched.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sha256"), "{out}");
    assert!(cli.work.join("scheduled.db.encryption").is_file());
    let (code, _, err) = cli.run(&[
        "backups",
        "a",
        "-n",
        TENANTS,
        "--fetch",
        "a-20200101T000000Z.db",
        "--out",
        cli.work.join("none.db").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a snapshot on the backups' volume"),
        "{err}"
    );
    assert!(!cli.work.join("none.db").exists());
    fetched
}

fn clusters_api(client: &kube::Client) -> Api<VirtualCluster> {
    Api::namespaced(client.clone(), TENANTS)
}

/// Runs `future` to completion from synchronous code inside the test's
/// runtime (for [`wait_for`]'s checks).
fn futures_lite_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

async fn supervisor_metrics(client: &kube::Client) -> String {
    vnest_tests::get_from_pod(
        client,
        "vnest-system",
        "app.kubernetes.io/name=vnest-supervisor",
        8080,
        "/metrics",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_virtual_clusters_on_a_real_host() {
    let binaries = vnest_tests::vnest_image_binaries();
    let UpstreamBinaries::Dir(bin_dir) = upstream_binaries() else {
        panic!("tests use a directory of upstream binaries");
    };
    let slot = HostSlot::acquire().await;
    let nodes = (1..=2)
        .map(|i| {
            let mut node = NodeSpec::new(i);
            node.labels.push(("vnest.dev/pool".into(), "ci".into()));
            node
        })
        .collect();
    let mut host = TestHost::start_for_vnest(slot, nodes, binaries).await;
    let client = host.client();
    let work = tempfile::tempdir().unwrap();
    // A kubectl plugin is found on the PATH by its name.
    let plugin_dir = work.path().join("bin");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_vnest"),
        plugin_dir.join("kubectl-vnest"),
    )
    .unwrap();
    let cli = Cli {
        admin: host.kubeconfig(),
        path: format!(
            "{}:{}:{}",
            plugin_dir.display(),
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        work: work.path().to_owned(),
    };

    // Errors before vnest is on the host, each with its exit code.
    let unreachable = cli.work.join("unreachable.kubeconfig");
    std::fs::write(
        &unreachable,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: h\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: h\n  context:\n    cluster: h\n    user: h\ncurrent-context: h\nusers:\n- name: h\n  user:\n    token: x\n",
    )
    .unwrap();
    let (code, _, err) = cli.run(&["list", "--kubeconfig", unreachable.to_str().unwrap()]);
    assert_eq!(code, 5, "host unreachable");
    assert!(err.contains("unreachable"), "{err}");
    let (code, _, err) = cli.run(&["list", "-n", TENANTS]);
    assert_eq!(code, 6, "CRD not installed");
    assert!(err.contains("vnest install"), "says what to do: {err}");
    let (code, _, err) = cli.run(&["create", "x", "--ttl", "soon", "--pool", POOL]);
    assert_eq!(code, 1);
    assert!(err.contains(vnest_api::ttl::MESSAGE), "{err}");
    let (code, _, err) = cli.run(&["create", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("--pool"), "{err}");

    // Install: a dry run changes nothing; then for real, twice.
    let (code, out, _) = cli.run(&["install", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("customresourcedefinition/virtualclusters.vnest.dev created (dry run)"),
        "{out}"
    );
    let (code, _, _) = cli.run(&["list", "-n", TENANTS]);
    assert_eq!(code, 6, "a dry run installs nothing");
    let (code, out, err) = cli.run(&["install"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployment/vnest-supervisor created"), "{out}");
    assert!(err.contains("the supervisor is available"), "{err}");
    let (code, out, _) = cli.run(&["install"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("customresourcedefinition/virtualclusters.vnest.dev unchanged"),
        "{out}"
    );

    let (ok, _, err) = kubectl(&cli.admin, &["create", "namespace", TENANTS]);
    assert!(ok, "{err}");
    let (code, _, err) = cli.run(&["list", "-n", TENANTS]);
    assert_eq!(code, 0);
    assert!(
        err.contains("no VirtualClusters in namespace tenants"),
        "{err}"
    );

    // No RBAC on the host: a ServiceAccount with no rights.
    let (ok, _, err) = kubectl(
        &cli.admin,
        &["create", "serviceaccount", "nobody", "-n", TENANTS],
    );
    assert!(ok, "{err}");
    let (ok, token, err) = kubectl(&cli.admin, &["create", "token", "nobody", "-n", TENANTS]);
    assert!(ok, "{err}");
    let (_, server, _) = kubectl(
        &cli.admin,
        &[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    );
    let nobody = cli.work.join("nobody.kubeconfig");
    std::fs::write(
        &nobody,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: h\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: h\n  context:\n    cluster: h\n    user: h\ncurrent-context: h\nusers:\n- name: h\n  user:\n    token: {}\n",
            server.trim(),
            token.trim()
        ),
    )
    .unwrap();
    let (code, _, err) = cli.run(&[
        "create",
        "x",
        "-n",
        TENANTS,
        "--pool",
        POOL,
        "--kubeconfig",
        nobody.to_str().unwrap(),
    ]);
    assert_eq!(code, 7, "no RBAC");
    assert!(err.contains("RBAC"), "{err}");

    // Create with --wait: each stage shown, ending with how to connect.
    let kubeconfig = cli.work.join("a.kubeconfig");
    let (code, _, err) = cli.run(&[
        "create",
        "a",
        "-n",
        TENANTS,
        "--pool",
        POOL,
        "--expose",
        "node-port",
        "--wait",
        "--kubeconfig-out",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for stage in [
        "Certificates ready",
        "Datastore ready",
        "APIServer ready",
        "Syncer ready",
        "] ready",
    ] {
        assert!(err.contains(stage), "progress shows {stage:?}: {err}");
    }
    assert!(err.contains("kubectl --kubeconfig"), "how to use it: {err}");
    let (ok, out, err) = kubectl(&kubeconfig, &["get", "namespaces"]);
    assert!(ok && out.contains("kube-system"), "{err}");
    let (code, _, err) = cli.run(&["create", "a", "-n", TENANTS, "--pool", POOL]);
    assert_eq!(code, 1, "name taken");
    assert!(
        err.contains("already exists") && err.contains("pick another name"),
        "{err}"
    );

    // list, describe, kubeconfig, connect.
    let (code, out, _) = cli.run(&["list", "-n", TENANTS]);
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.contains(" a ")).unwrap_or_default();
    assert!(row.contains("Ready") && row.contains(POOL), "{out}");
    let (code, out, _) = cli.run(&["list", "-A", "-o", "json"]);
    assert_eq!(code, 0);
    let listed: Vec<VirtualCluster> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1);
    let (code, out, _) = cli.run(&["ls", "-A", "-o", "wide"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ENDPOINT") && out.contains("https://"),
        "{out}"
    );
    let (code, out, _) = cli.run(&["describe", "a", "-n", TENANTS]);
    assert_eq!(code, 0);
    for part in [
        "Phase:",
        "Ready",
        "Conditions:",
        "APIServer",
        "Isolation on the host:",
        "dedicated nodes vnest.dev/pool=ci",
        "pods=",
        "Events:",
    ] {
        assert!(out.contains(part), "describe shows {part:?}: {out}");
    }
    let metrics = supervisor_metrics(&client).await;
    assert!(
        metrics.contains("vnest_supervisor_virtual_clusters{phase=\"Ready\"} 1"),
        "the supervisor counts clusters by phase: {metrics}"
    );
    assert!(
        metrics.contains("vnest_supervisor_reconciles_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    verify_proves_isolation_and_names_what_breaks_it(&cli, &client, &mut host).await;
    snapshot_and_restore_bring_back_the_tenants_state(
        &cli,
        &client,
        &kubeconfig,
        &bin_dir.join("etcdutl"),
    )
    .await;
    let (code, _, err) = cli.run(&["describe", "nope", "-n", TENANTS]);
    assert_eq!(code, 3, "not found");
    assert!(err.contains("vnest list -A"), "{err}");
    let (code, out, _) = cli.run(&["kubeconfig", "a", "-n", TENANTS]);
    assert_eq!(code, 0);
    let printed = cli.work.join("printed.kubeconfig");
    std::fs::write(&printed, out).unwrap();
    let (ok, _, err) = kubectl(&printed, &["create", "namespace", "from-printed"]);
    assert!(ok, "{err}");
    let merged = cli.work.join("merged.kubeconfig");
    std::fs::copy(&cli.admin, &merged).unwrap();
    let (code, _, err) = cli.run(&[
        "connect",
        "a",
        "-n",
        TENANTS,
        "--merge-into",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (ok, out, err) = kubectl(
        &merged,
        &[
            "--context",
            "vnest-tenants-a",
            "get",
            "namespace",
            "from-printed",
        ],
    );
    assert!(
        ok && out.contains("from-printed"),
        "the merged context reaches the tenant: {err}"
    );
    let (ok, out, _) = kubectl(&merged, &["get", "namespace", "vnest-system"]);
    assert!(
        ok && out.contains("vnest-system"),
        "the host context stays current"
    );

    // connect through a port-forward (as when the endpoint is private).
    let forwarded = cli.work.join("forwarded.kubeconfig");
    let (mut forward, said) = cli.spawn(&[
        "connect",
        "a",
        "-n",
        TENANTS,
        "--port-forward",
        "--merge-into",
        forwarded.to_str().unwrap(),
    ]);
    wait_for("the forward", Duration::from_secs(60), || {
        said.lock().unwrap().contains("forwarding")
    });
    let (ok, out, err) = kubectl(&forwarded, &["get", "namespace", "from-printed"]);
    assert!(
        ok && out.contains("from-printed"),
        "through the port-forward: {err}"
    );
    kill(Pid::from_raw(forward.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(exit_code(&mut forward, Duration::from_secs(30)), 0);

    // The kubectl plugin.
    let plugin = Command::new(bin_dir.join("kubectl"))
        .args(["vnest", "list", "-n", TENANTS])
        .env("KUBECONFIG", &cli.admin)
        .env("PATH", &cli.path)
        .output()
        .unwrap();
    assert!(
        plugin.status.success() && String::from_utf8_lossy(&plugin.stdout).contains("Ready"),
        "kubectl vnest list: {}{}",
        String::from_utf8_lossy(&plugin.stdout),
        String::from_utf8_lossy(&plugin.stderr)
    );
    let (code, out, _) = cli.run(&["completion", "bash"]);
    assert!(
        code == 0 && out.contains("complete"),
        "a bash completion script"
    );

    // pause and resume.
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), TENANTS);
    let (code, _, _) = cli.run(&["pause", "a", "-n", TENANTS]);
    assert_eq!(code, 0);
    assert!(clusters.get("a").await.unwrap().spec.paused);
    let (code, _, _) = cli.run(&["resume", "a", "-n", TENANTS]);
    assert_eq!(code, 0);
    assert!(!clusters.get("a").await.unwrap().spec.paused);

    // A wait that runs out names the stage it waited on.
    let stuck = cli.work.join("stuck.yaml");
    std::fs::write(
        &stuck,
        "apiVersion: vnest.dev/v1alpha1\nkind: VirtualCluster\nmetadata:\n  name: stuck\nspec:\n  controlPlane:\n    nodeSelector:\n      nowhere: \"true\"\n  nodePool:\n    nodeSelector:\n      vnest.dev/pool: ci\n",
    )
    .unwrap();
    let (code, _, err) = cli.run(&[
        "create",
        "-f",
        stuck.to_str().unwrap(),
        "-n",
        TENANTS,
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(code, 4, "timed out");
    assert!(
        err.contains("timed out after 30s waiting for Datastore"),
        "names the stage: {err}"
    );

    // vnest run: the command's exit code, nothing left behind.
    let (code, out, err) = cli.run(&[
        "run",
        "--name",
        "ci-exit",
        "-n",
        TENANTS,
        "--pool",
        POOL,
        "--",
        "sh",
        "-c",
        "kubectl create namespace x && exit 7",
    ]);
    assert_eq!(code, 7, "the command's exit code: {err}");
    assert!(
        out.contains("namespace/x created"),
        "the command's output streams through: {out}"
    );
    assert!(err.contains("TTL 1h"), "a TTL is always set: {err}");
    // The same name at once, as CI reruns a job: the deletion returned
    // before the host finished with the old namespaces, and the new
    // cluster waits for them instead of failing.
    let (code, _, err) = cli.run(&[
        "run", "--name", "ci-exit", "-n", TENANTS, "--pool", POOL, "--", "kubectl", "get", "ns",
        "x",
    ]);
    assert_eq!(
        code, 1,
        "a new cluster, without the old one's namespace: {err}"
    );
    assert!(err.contains("not found"), "{err}");
    nothing_left_of(&client, "ci-exit").await;
    interrupted_run_leaves_nothing(&cli, &client, "ci-int", Signal::SIGINT).await;
    interrupted_run_leaves_nothing(&cli, &client, "ci-term", Signal::SIGTERM).await;

    // Every leaf renewed at once; the old kubeconfig (same CA) still works.
    let (code, _, err) = cli.run(&["renew-certificates", "a", "-n", TENANTS, "--wait"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("] renewed") && err.contains("] ready"),
        "{err}"
    );
    let (ok, _, err) = kubectl(&kubeconfig, &["get", "namespace", "default"]);
    assert!(ok, "the kubeconfig works after the renewal: {err}");
    let (code, _, err) = cli.run(&["renew-certificates", "nope", "-n", TENANTS]);
    assert_eq!(code, 3, "{err}");

    // Uninstall is refused while clusters exist; delete them, then it goes.
    let (code, _, err) = cli.run(&["uninstall"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tenants/a") && err.contains("--force"),
        "{err}"
    );
    let (code, _, err) = cli.run(&["delete", "a", "-n", TENANTS, "--wait"]);
    assert_eq!(code, 0, "{err}");
    nothing_left_of(&client, "a").await;
    let (code, _, _) = cli.run(&["delete", "a", "-n", TENANTS]);
    assert_eq!(code, 3, "already gone");
    let (code, _, err) = cli.run(&["delete", "stuck", "-n", TENANTS, "--wait"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli.run(&["uninstall"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = cli.run(&["list", "-n", TENANTS]);
    assert_eq!(code, 6, "uninstalled");

    host.stop().await;
}
