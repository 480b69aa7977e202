//! Benchmark: `vnest local up` until its kubeconfig is usable, against a bare
//! start of the same etcd, kube-apiserver and kube-controller-manager binaries
//! with the same flags, measured side by side in one run.
//!
//! Run with `tools/bench-local-up.sh` (builds what it needs). Rounds alternate
//! which side goes first. Reports median, min and max per measure and the
//! ratios of the medians.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use vnest_control_plane::Layout;
use vnest_control_plane::flags::{self, Ports};
use vnest_local::layout::{write_file, write_pki};
use vnest_local::{Component, UpstreamBinaries};
use vnest_pki::{
    ClientCredentials, ControlPlanePki, ControlPlaneSpec, identity, render_kubeconfig,
};
use vnest_tests::{upstream_binaries, workspace_root};

const BARE_POLL: Duration = Duration::from_millis(10);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::var("VNEST_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let vnest = std::env::var_os("VNEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/vnest"));
    assert!(
        vnest.exists(),
        "{} is missing: cargo build --release -p vnest-cli (or set VNEST_BIN)",
        vnest.display()
    );
    let binaries = upstream_binaries();

    let (mut bare_api, mut bare_all, mut vnest_api, mut vnest_all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for bare_first in order {
            if bare_first {
                let (api, all) = bare_start(&binaries).await;
                bare_api.push(api);
                bare_all.push(all);
            } else {
                let (api, all) = vnest_up(&vnest, &binaries, round);
                vnest_api.push(api);
                vnest_all.push(all);
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    println!("| measure (seconds, {rounds} rounds) | median | min | max |");
    println!("|---|---|---|---|");
    for (name, samples) in [
        ("bare: etcd + kube-apiserver to /readyz", &mut bare_api),
        (
            "vnest: kube-apiserver ready (inside `local up`)",
            &mut vnest_api,
        ),
        (
            "bare: + kube-controller-manager running controllers",
            &mut bare_all,
        ),
        (
            "vnest: `vnest local up` to a usable kubeconfig",
            &mut vnest_all,
        ),
    ] {
        let (median, min, max) = stats(samples);
        println!("| {name} | {median:.2} | {min:.2} | {max:.2} |");
    }
    println!();
    println!(
        "ratio vnest/bare, apiserver ready: {:.2}",
        stats(&mut vnest_api).0 / stats(&mut bare_api).0
    );
    println!(
        "ratio vnest/bare, whole control plane ready: {:.2}",
        stats(&mut vnest_all).0 / stats(&mut bare_all).0
    );
}

fn stats(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    };
    (median, samples[0], samples[n - 1])
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the processes on drop, whatever happens to the round.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(binary: &Path, args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Certificates are prepared before the clock starts; then etcd and the
/// apiserver start at once and /readyz is polled every 10 ms; then the
/// controller-manager starts and the `default` ServiceAccount is awaited.
async fn bare_start(binaries: &UpstreamBinaries) -> (f64, f64) {
    let dir = tempfile::Builder::new()
        .prefix("vnest-bench-bare-")
        .tempdir()
        .unwrap();
    let layout = Layout {
        dir: dir.path().to_owned(),
    };
    let pki = ControlPlanePki::generate(&ControlPlaneSpec::new("bare")).unwrap();
    write_pki(&layout, &pki).unwrap();
    let ports = Ports {
        etcd_client: free_port(),
        etcd_peer: free_port(),
        etcd_metrics: free_port(),
        apiserver: free_port(),
        controller_manager: free_port(),
        scheduler: free_port(),
    };
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    let ca = &pki.ca.cert().cert_pem;
    let admin = render_kubeconfig(
        "bare",
        &server,
        ca,
        identity::ADMIN_USER,
        ClientCredentials::Certificate(&pki.admin),
    )
    .unwrap();
    let kcm = render_kubeconfig(
        "bare",
        &server,
        ca,
        identity::CONTROLLER_MANAGER_USER,
        ClientCredentials::Certificate(&pki.controller_manager),
    )
    .unwrap();
    write_file(&layout.kubeconfig("controller-manager"), &kcm, true).unwrap();
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&admin).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();

    let start = Instant::now();
    let mut processes = Processes(vec![
        spawn(
            &binaries.locate(Component::Etcd).unwrap(),
            &flags::etcd(&layout, &ports, "bare"),
            &dir.path().join("etcd.log"),
        ),
        spawn(
            &binaries.locate(Component::ApiServer).unwrap(),
            &flags::apiserver(&layout, &ports, std::net::IpAddr::from([127, 0, 0, 1])),
            &dir.path().join("apiserver.log"),
        ),
    ]);
    loop {
        let readyz = http::Request::get("/readyz").body(Vec::new()).unwrap();
        if client.request_text(readyz).await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "bare apiserver never got ready"
        );
        tokio::time::sleep(BARE_POLL).await;
    }
    let api = start.elapsed().as_secs_f64();
    processes.0.push(spawn(
        &binaries.locate(Component::ControllerManager).unwrap(),
        &flags::controller_manager(&layout, &ports, "bare"),
        &dir.path().join("kcm.log"),
    ));
    let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
    while !matches!(sas.get_opt("default").await, Ok(Some(_))) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "bare controller-manager never got ready"
        );
        tokio::time::sleep(BARE_POLL).await;
    }
    let all = start.elapsed().as_secs_f64();
    drop(processes);
    (api, all)
}

/// The whole `vnest local up` command, from exec to exit; the apiserver's
/// ready time is what `serve` recorded.
fn vnest_up(vnest: &Path, binaries: &UpstreamBinaries, round: usize) -> (f64, f64) {
    let UpstreamBinaries::Dir(bin_dir) = binaries else {
        panic!("the benchmark needs a directory of upstream binaries");
    };
    let state = tempfile::tempdir().unwrap();
    let name = format!("bench-{}-{round}", std::process::id());
    let run = |args: &[&str]| {
        Command::new(vnest)
            .args(args)
            .env("VNEST_STATE_DIR", state.path())
            .env("VNEST_UPSTREAM_BIN_DIR", bin_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let start = Instant::now();
    let up = run(&["local", "up", &name]);
    let all = start.elapsed().as_secs_f64();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let state_file = state.path().join("local").join(&name).join("state.json");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_file).unwrap()).unwrap();
    let api_ms = recorded["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["message"] == "kube-apiserver ready")
        .and_then(|s| s["elapsed_ms"].as_u64())
        .unwrap();
    let down = run(&["local", "down", &name]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    (api_ms as f64 / 1000.0, all)
}
