//! Faults under load, on a real host: while a client creates and deletes
//! ConfigMaps, Secrets and Services in a tenant and a Deployment's 200
//! pods run on simulated pool nodes, each part of the system is killed
//! with SIGKILL (a crash: nothing flushed, nothing said), one at a time and
//! then two at once: a member of the tenant's 3-member etcd, one of its 2
//! apiservers, its controller-manager, its syncer, the supervisor and the
//! host's apiserver. Afterwards every object of the tenant has exactly one
//! host copy and no host copy lacks its tenant object: 0 lost, 0
//! duplicated, 0 orphaned. The time from the last fault until then, and
//! the client's failed requests in each fault, are printed (reported in
//! docs/operations.md), not asserted: timing belongs to benchmarks.
//!
//! First, with the same kind of load, the tenant (made at the previous
//! Kubernetes minor) is upgraded to the pinned one: no request fails.
//!
//! Needs root and the packages of tools/host/install-prerequisites.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource, ResourceExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use vnest_api::certificate_renewal;
use vnest_api::host_copies::origin;
use vnest_api::host_names::{HostNamespaceRole, host_namespace, labels};
use vnest_devhost::topology::NodeSpec;
use vnest_tests::{HostSlot, TestHost, kubectl};

mod common;
use common::*;

/// The tenant namespace the load writes in.
const LOAD: &str = "load";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_under_load_lose_duplicate_and_orphan_nothing() {
    let slot = HostSlot::acquire().await;
    let sim = vec![("vnest.dev/pool".to_owned(), "sim".to_owned())];
    let mut host = TestHost::start_configured(slot, vec![NodeSpec::new(1)], |options| {
        options.simulated_nodes = vec![sim.clone(), sim.clone(), sim.clone()];
        options.vnest_binaries = vnest_tests::vnest_image_binaries();
        options.previous_minor = true;
    })
    .await;
    let client = host.client();
    let admin = host.kubeconfig();
    let work = tempfile::tempdir().unwrap();
    let mut vc = virtual_cluster("faults", "sim");
    // Made at the previous minor, and upgraded under load first.
    let previous = previous_minor_version();
    vc.spec.kubernetes_version = Some(previous.clone());
    vc.spec
        .isolation
        .resource_quota
        .insert("pods".into(), Quantity("400".into()));
    // Each of the three loads (the upgrade's, the faults', the renewal's)
    // leaves up to 40 Services, each with its host copy.
    vc.spec
        .isolation
        .resource_quota
        .insert("services".into(), Quantity("200".into()));
    vc.spec.control_plane.replicas = 2;
    vc.spec.datastore.etcd = Some(vnest_api::OwnedEtcd {
        replicas: ETCD_MEMBERS as i32,
        ..Default::default()
    });
    let (_, tenant) = ready_tenant(&client, &admin, vc, work.path()).await;
    let wl = host_namespace(TENANTS, "faults", HostNamespaceRole::Workloads);
    let (ok, out, err) = kubectl(&tenant, &["create", "namespace", LOAD]);
    assert!(ok, "{out}{err}");
    let tenant_api = patient_client(&tenant).await;
    // The loads of the rolls (upgrade, renewal) go through a client that
    // speaks HTTP/2, as kubectl and client-go do.
    let rolled_api = http2_client(&tenant).await;
    upgraded_under_load(&client, &rolled_api, &previous).await;
    apply_in_tenant(&tenant, work.path(), "many.yaml", MANY).await;
    let load = Load::start(tenant_api.clone(), "load");

    let mut report = Vec::new();
    let mut fault = async |kills: &[Crash], host: &mut TestHost| {
        let name = kills
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(" and ");
        let failed_before = load.failed.count();
        let written_before = load.written.load(Ordering::Relaxed);
        let mut killed = Vec::new();
        for crash in kills.iter().filter(|k| **k != Crash::HostApiServer) {
            killed.push((*crash, crash.inflict(&client).await));
        }
        let at = Instant::now();
        if kills.contains(&Crash::Etcd) {
            let tries = write_succeeds(&tenant_api, &name).await;
            eprintln!("{name}: a write went through after {tries} failed tries");
        }
        if kills.contains(&Crash::HostApiServer) {
            host.crash_apiserver().await;
        }
        for (crash, before) in killed {
            crash.wait_back(&client, before).await;
        }
        // Some load on the recovered system before the next fault.
        let written = load.written.load(Ordering::Relaxed);
        wait_until("the load goes on", Duration::from_secs(120), || async {
            (load.written.load(Ordering::Relaxed) >= written + 30).then_some(())
        })
        .await;
        let said = load.failed.said_since(failed_before);
        report.push(format!(
            "{name}: {} writes, {} failed requests {:?}",
            load.written.load(Ordering::Relaxed) - written_before,
            load.failed.count() - failed_before,
            &said[..said.len().min(3)]
        ));
        at
    };
    let pods_on_host = || async {
        let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), &wl);
        let listed = pods.list_metadata(&ListParams::default()).await.ok()?;
        Some(
            listed
                .items
                .iter()
                .filter(|p| {
                    origin(p.metadata.annotations.as_ref()).is_some_and(|(ns, _)| ns == LOAD)
                })
                .count(),
        )
    };
    wait_until(
        "50 of the pods are on the host",
        Duration::from_secs(300),
        || async { (pods_on_host().await? >= 50).then_some(()) },
    )
    .await;

    use Crash::*;
    fault(&[Etcd], &mut host).await;
    fault(&[ApiServer], &mut host).await;
    fault(&[ControllerManager], &mut host).await;
    fault(&[Syncer], &mut host).await;
    let (ok, out, err) = kubectl(
        &tenant,
        &["scale", "-n", LOAD, "deployment", "many", "--replicas=150"],
    );
    assert!(ok, "{out}{err}");
    fault(&[Supervisor], &mut host).await;
    fault(&[HostApiServer], &mut host).await;
    fault(&[Syncer, ApiServer], &mut host).await;
    fault(&[Etcd, Supervisor], &mut host).await;
    let last = fault(&[ControllerManager, HostApiServer], &mut host).await;
    let written = load.stop().await;
    eprintln!(
        "the load wrote {written} objects; faults:\n  {}",
        report.join("\n  ")
    );

    let said = std::cell::RefCell::new(String::new());
    wait_until(
        "every tenant object has exactly one host copy, none is orphaned",
        Duration::from_secs(600),
        || async {
            let difference = differences(&client, &wl, &tenant_api).await;
            if !difference.is_empty() && *said.borrow() != difference {
                eprintln!("not yet: {difference}");
                *said.borrow_mut() = difference.clone();
            }
            difference.is_empty().then_some(())
        },
    )
    .await;
    eprintln!(
        "converged {:.1}s after the last fault",
        last.elapsed().as_secs_f64()
    );
    wait_until(
        "150 pods Running in the tenant",
        Duration::from_secs(300),
        || async {
            let pods: Api<Pod> = Api::namespaced(tenant_api.clone(), LOAD);
            let listed = pods.list(&ListParams::default()).await.ok()?;
            let running = listed
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == 150 && listed.items.len() == 150).then_some(())
        },
    )
    .await;
    assert_eq!(pods_on_host().await, Some(150), "exactly 150 on the host");
    assert_eq!(
        differences(&client, &wl, &tenant_api).await,
        "",
        "still the same"
    );
    every_leaf_renewed_under_load(&client, &admin, &rolled_api).await;

    let (ok, out, err) = kubectl(&tenant, &["delete", "namespace", LOAD, "--wait=false"]);
    assert!(ok, "{out}{err}");
    wait_until(
        "every host copy is gone",
        Duration::from_secs(600),
        || async {
            (pods_on_host().await? == 0 && differences(&client, &wl, &tenant_api).await.is_empty())
                .then_some(())
        },
    )
    .await;
    host.stop().await;
}

/// The Kubernetes version of the previous minor's binaries the host has
/// images of (`tools/upstream/build.sh` builds them into `previous/`).
fn previous_minor_version() -> String {
    let binaries = vnest_tests::upstream_binaries()
        .previous_minor()
        .expect("the upstream binaries in a directory");
    let apiserver = binaries
        .locate_binary("kube-apiserver")
        .expect("the previous minor's kube-apiserver (tools/upstream/build.sh builds it)");
    let output = std::process::Command::new(apiserver)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .find(|w| w.starts_with('v'))
        .expect("kube-apiserver --version names its version")
        .to_owned()
}

/// The tag of the image of the first container of Deployment `name`.
async fn template_version(host: &Client, namespace: &str, name: &str) -> Option<String> {
    let deployments: Api<Deployment> = Api::namespaced(host.clone(), namespace);
    let deployment = deployments.get(name).await.ok()?;
    let spec = deployment.spec.template.spec?;
    let image = spec.containers.first()?.image.clone()?;
    Some(image.rsplit_once(':')?.1.to_owned())
}

/// `spec.kubernetesVersion` moved from the previous minor to the pinned one
/// while a client lists and writes through the tenant's 2 apiservers: etcd
/// is snapshotted first, then the apiservers move, and only once every one
/// of them runs the new version do the controller-manager and scheduler;
/// no request fails, and the status says what each component runs.
async fn upgraded_under_load(host: &Client, tenant: &Client, previous: &str) {
    let cp = host_namespace(TENANTS, "faults", HostNamespaceRole::ControlPlane);
    let vcs: Api<vnest_api::VirtualCluster> = Api::namespaced(host.clone(), TENANTS);
    let versions = || async {
        vcs.get("faults")
            .await
            .ok()
            .and_then(|vc| vc.status?.component_versions)
    };
    let before = versions().await.expect("the versions the components run");
    assert_eq!(before.kube_apiserver.as_deref(), Some(previous));
    assert_eq!(before.kube_controller_manager.as_deref(), Some(previous));
    assert_eq!(before.etcd.as_deref(), Some(vnest_api::ETCD_IMAGE_TAG));
    let wanted = vnest_api::DEFAULT_KUBERNETES_VERSION;
    let job_name = vnest_supervisor::desired::upgrade::snapshot_job_name(wanted);
    let load = Load::start(tenant.clone(), "upgrade");
    vcs.patch(
        "faults",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({ "spec": { "kubernetesVersion": wanted } })),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let jobs: Api<Job> = Api::namespaced(host.clone(), &cp);
    let mut snapshot_seen_done = false;
    let mut apiserver_moved_at = None;
    loop {
        // Read in the order the supervisor acts, so that what a later
        // read shows cannot precede what an earlier one shows.
        let controllers = template_version(host, &cp, "controller-manager").await;
        let recorded = versions().await.unwrap_or_default();
        let apiserver = template_version(host, &cp, "apiserver").await;
        let job = jobs.get_opt(&job_name).await.unwrap();
        if controllers.as_deref() == Some(wanted) {
            assert_eq!(
                recorded.kube_apiserver.as_deref(),
                Some(wanted),
                "the controller-manager moved only once every apiserver ran {wanted}"
            );
        }
        if apiserver.as_deref() == Some(wanted) && apiserver_moved_at.is_none() {
            apiserver_moved_at = Some(started.elapsed());
            assert!(
                snapshot_seen_done
                    || job.as_ref().is_some_and(|j| {
                        j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0
                    }),
                "etcd was snapshotted (Job {job_name}) before the apiserver moved: {job:?}"
            );
        }
        snapshot_seen_done |= job
            .as_ref()
            .is_some_and(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0);
        let vc = vcs.get("faults").await.unwrap();
        let status = vc.status.unwrap_or_default();
        if status.version.as_deref() == Some(wanted) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not upgraded in 10 minutes: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    let after = versions().await.unwrap();
    assert_eq!(after.kube_apiserver.as_deref(), Some(wanted));
    assert_eq!(after.kube_controller_manager.as_deref(), Some(wanted));
    let served = tenant.apiserver_version().await.unwrap();
    assert_eq!(served.git_version, wanted, "the tenant's API says so too");
    // The snapshot is on the backups' volume.
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(host.clone(), &cp);
    let claim = claims.get("etcd-backups").await.unwrap();
    let volume = claim.spec.and_then(|s| s.volume_name).expect("bound");
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(host.clone());
    let path = volumes
        .get(&volume)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.local.map(|l| l.path))
        .expect("a local volume");
    let snapshots: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("faults-") && n.ends_with(".db"))
        .collect();
    assert_eq!(snapshots.len(), 1, "one snapshot in {path}: {snapshots:?}");
    eprintln!(
        "upgrade {previous} -> {wanted}: done in {:.1}s (apiservers moving after {:.1}s)",
        took.as_secs_f64(),
        apiserver_moved_at.unwrap_or_default().as_secs_f64()
    );
    load.stop_unharmed("the control plane was upgraded", 0)
        .await;
}

/// Every leaf certificate renewed (as `vnest renew-certificates` asks)
/// while a client lists and writes through the tenant's 2 apiservers, which
/// roll one at a time, and the syncer takes its renewed certificates
/// without a restart (its webhook gives Service addresses): no request
/// fails.
async fn every_leaf_renewed_under_load(host: &Client, admin: &Path, tenant: &Client) {
    let cp = host_namespace(TENANTS, "faults", HostNamespaceRole::ControlPlane);
    let syncer_pod = || async {
        let pods: Api<Pod> = Api::namespaced(host.clone(), &cp);
        let list = pods
            .list(&ListParams::default().labels("vnest.dev/component=syncer"))
            .await
            .unwrap();
        let pod = list.items.first().expect("the syncer's pod").clone();
        (pod.uid().unwrap_or_default(), restarts(&pod))
    };
    let syncer_before = syncer_pod().await;
    let apiserver_pods = || async {
        let pods: Api<Pod> = Api::namespaced(host.clone(), &cp);
        pods.list(&ListParams::default().labels("vnest.dev/component=apiserver"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.uid().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let apiservers_before = apiserver_pods().await;
    let load = Load::start(tenant.clone(), "renewal");
    let vcs: Api<vnest_api::VirtualCluster> = Api::namespaced(host.clone(), TENANTS);
    let asked = "2026-01-01T00:00:00Z";
    vcs.patch(
        "faults",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({
            "metadata": { "annotations": { certificate_renewal::ASKED: asked } }
        })),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(host.clone(), &cp);
    let started = Instant::now();
    loop {
        let secret = secrets
            .get(vnest_api::host_names::PKI_SECRET)
            .await
            .unwrap();
        if secret
            .annotations()
            .get(certificate_renewal::DONE)
            .map(String::as_str)
            == Some(asked)
        {
            eprintln!(
                "the leaves are renewed after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let (_, logs, _) = kubectl(
                admin,
                &[
                    "logs",
                    "-n",
                    "vnest-system",
                    "deployment/vnest-supervisor",
                    "--tail=60",
                ],
            );
            let (_, vc, _) = kubectl(
                admin,
                &[
                    "get",
                    "virtualcluster",
                    "-n",
                    TENANTS,
                    "faults",
                    "-o",
                    "yaml",
                ],
            );
            panic!(
                "the leaves were not renewed in 240 s; the PKI Secret says {:?}\n{vc}\nthe supervisor:\n{logs}",
                secret.annotations()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_until(
        "Ready again with the new certificates",
        Duration::from_secs(300),
        || async {
            let vc = vcs.get("faults").await.ok()?;
            (vc.status?.renewal_rolled_out.as_deref() == Some(asked)).then_some(())
        },
    )
    .await;
    let apiservers_after = apiserver_pods().await;
    assert!(
        !apiservers_before.is_empty()
            && apiservers_after
                .iter()
                .all(|uid| !apiservers_before.contains(uid)),
        "said rolled out only once no apiserver from before the renewal runs: {apiservers_before:?} then {apiservers_after:?}"
    );
    // The kubelet rewrites the syncer's mounted Secrets at its next sync
    // of the pod, and the syncer looks at them every few seconds.
    wait_until(
        "the syncer took its renewed certificates",
        Duration::from_secs(240),
        || async {
            let metrics = vnest_tests::get_from_pod(
                host,
                &cp,
                "vnest.dev/component=syncer",
                8080,
                "/metrics",
            )
            .await;
            metrics
                .contains("vnest_syncer_certificate_reloads_total{outcome=\"taken\"}")
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "the syncer took them {:.1}s after they were asked for",
        started.elapsed().as_secs_f64()
    );
    load.stop_unharmed("the certificates were renewed", ETCD_MEMBERS)
        .await;
    assert_eq!(
        syncer_pod().await,
        syncer_before,
        "the syncer took its renewed certificates without a restart"
    );
}

/// A part of the system to crash: a pod's binary, or the host apiserver.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Crash {
    Etcd,
    ApiServer,
    ControllerManager,
    Syncer,
    Supervisor,
    HostApiServer,
}

impl Crash {
    fn name(self) -> &'static str {
        match self {
            Crash::Etcd => "an etcd member",
            Crash::ApiServer => "an apiserver",
            Crash::ControllerManager => "the controller-manager",
            Crash::Syncer => "the syncer",
            Crash::Supervisor => "the supervisor",
            Crash::HostApiServer => "the host apiserver",
        }
    }

    /// The pods' namespace, their label selector and the binary.
    fn target(self) -> (String, String, &'static str) {
        let cp = host_namespace(TENANTS, "faults", HostNamespaceRole::ControlPlane);
        let component = |c: &str| format!("{}={c}", labels::COMPONENT);
        match self {
            Crash::Etcd => (cp, component("etcd"), "etcd"),
            Crash::ApiServer => (cp, component("apiserver"), "kube-apiserver"),
            Crash::ControllerManager => (
                cp,
                component("controller-manager"),
                "kube-controller-manager",
            ),
            Crash::Syncer => (cp, component("syncer"), "vnest-syncer"),
            Crash::Supervisor => (
                "vnest-system".to_owned(),
                "app.kubernetes.io/name=vnest-supervisor".to_owned(),
                "vnest-supervisor",
            ),
            Crash::HostApiServer => unreachable!("the host apiserver is no pod"),
        }
    }

    /// SIGKILLs the binary in the last of its pods (by name: `etcd-2`, not
    /// the first member); returns that pod and its restart count before.
    async fn inflict(self, client: &Client) -> (String, i32) {
        let (namespace, selector, binary) = self.target();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let mut listed = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        listed.sort_by_key(|p| p.name_any());
        let pod = listed
            .pop()
            .unwrap_or_else(|| panic!("no pod {selector} in {namespace}"));
        let uid = pod.metadata.uid.clone().unwrap();
        let pid = process_in_pod(&uid, binary)
            .unwrap_or_else(|| panic!("no {binary} process in pod {}", pod.name_any()));
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        eprintln!(
            "killed {binary} (pid {pid}) of pod {namespace}/{}",
            pod.name_any()
        );
        (pod.name_any(), restarts(&pod))
    }

    /// Waits until the killed container runs again and its pod is Ready.
    async fn wait_back(self, client: &Client, (pod, before): (String, i32)) {
        let (namespace, _, binary) = self.target();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        wait_until(
            &format!("{binary} of {pod} is back"),
            Duration::from_secs(300),
            || async {
                let pod = pods.get(&pod).await.ok()?;
                let ready = pod
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (restarts(&pod) > before && ready).then_some(())
            },
        )
        .await;
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

/// The pid of the process running `binary` in the pod with `uid`: a
/// process in the pod's cgroup (cgroupfs names it `pod<uid>`) whose first
/// argument names the binary.
fn process_in_pod(uid: &str, binary: &str) -> Option<i32> {
    let cgroup_name = format!("pod{uid}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            if !cgroup.contains(&cgroup_name) {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let first = cmdline.split(|b| *b == 0).next()?;
            let first = std::str::from_utf8(first).ok()?;
            (Path::new(first).file_name() == Some(OsStr::new(binary))).then_some(pid)
        })
}

/// A client of the tenant that gives up on a request after 10 s (a
/// connection to a killed apiserver otherwise waits for TCP).
async fn patient_client(kubeconfig: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(10));
    config.write_timeout = Some(Duration::from_secs(10));
    Client::try_from(config).unwrap()
}

/// A client of the tenant that speaks HTTP/2, as kubectl and client-go
/// do: an apiserver that stops (a roll) sends GOAWAY naming the last
/// request it took, so a request it never took is known and is sent
/// again ([`not_taken`]), where an HTTP/1.1 request crossing the closing
/// of its kept-alive connection gets no answer and cannot be told from one
/// that was taken (docs/operations.md).
async fn http2_client(kubeconfig: &Path) -> Client {
    use kube::client::ConfigExt as _;
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    // hyper-rustls offers h2 alone by ALPN (enable_http2 below).
    let tls = config.rustls_client_config().unwrap();
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let https = match &config.tls_server_name {
        Some(name) => https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            name.clone().try_into().unwrap(),
        )),
        None => https,
    };
    let https = https.enable_http2().wrap_connector(tcp);
    // Pings find a connection whose apiserver went without a word, late
    // enough that a busy apiserver's slow answer is not taken for that.
    let http = hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .http2_keep_alive_interval(Duration::from_secs(5))
        .http2_keep_alive_timeout(Duration::from_secs(20))
        .http2_keep_alive_while_idle(true)
        .build(https);
    let http = tower::ServiceExt::map_err(http, |error| {
        Box::new(error) as Box<dyn std::error::Error + Send + Sync>
    });
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().unwrap())
        .service(http);
    Client::new(service, config.default_namespace)
}

/// Whether the request failed without the server taking it: an HTTP/2
/// stream above the last one a GOAWAY named, or refused (RFC 9113, 8.7:
/// such requests can be retried safely, and client-go does).
fn not_taken(error: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return (h2.is_go_away() && h2.is_remote())
                || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = error.source();
    }
    false
}

/// Writes right after an etcd member was killed: with 3 members the tenant
/// stays writable. Returns the failed tries before one went through.
async fn write_succeeds(tenant: &Client, fault: &str) -> usize {
    let maps: Api<ConfigMap> = Api::namespaced(tenant.clone(), LOAD);
    let name = format!("probe-{}", fault.replace(' ', "-"));
    let object: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    for tries in 0..30 {
        match maps.create(&PostParams::default(), &object).await {
            Ok(_) => return tries,
            Err(kube::Error::Api(e)) if e.code == 409 => return tries,
            Err(e) => eprintln!("write with an etcd member down: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no write went through in 15 s with one of three etcd members down");
}

/// How many objects of each kind the load keeps: it deletes the one made
/// this many creates before (Services are limited by the host's quota).
const WINDOW: usize = 40;

/// A client creating ConfigMaps, Secrets and Services one after another,
/// listing, and deleting the oldest, retrying what fails as a controller
/// would.
struct Load {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    failed: Arc<Failures>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Names its objects `PREFIX-<n>`.
    fn start(tenant: Client, prefix: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Failures::default());
        let (s, w, f) = (stop.clone(), written.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let maps: Api<ConfigMap> = Api::namespaced(tenant.clone(), LOAD);
            let secrets: Api<Secret> = Api::namespaced(tenant.clone(), LOAD);
            let services: Api<Service> = Api::namespaced(tenant, LOAD);
            let mut i = 0usize;
            while !s.load(Ordering::Relaxed) {
                let name = format!("{prefix}-{i}");
                let meta = json!({ "name": name, "labels": { "load": "faults" } });
                let map = json!({ "metadata": meta, "data": { "i": i.to_string() } });
                let secret = json!({ "metadata": meta, "stringData": { "i": i.to_string() } });
                let service = json!({ "metadata": meta, "spec": {
                    "selector": { "app": "none" }, "ports": [{ "port": 80 }] } });
                create(&maps, map, &f).await;
                create(&secrets, secret, &f).await;
                create(&services, service, &f).await;
                w.fetch_add(3, Ordering::Relaxed);
                match maps.list(&ListParams::default().limit(50)).await {
                    Err(e) if to_send_again(&e) => f.note_retry(),
                    Err(e) => f.note(format!("list: {e}")),
                    Ok(_) => {}
                }
                if let Some(old) = i.checked_sub(WINDOW) {
                    let previous = format!("{prefix}-{old}");
                    delete(&maps, &previous, &f).await;
                    delete(&secrets, &previous, &f).await;
                    delete(&services, &previous, &f).await;
                    w.fetch_add(3, Ordering::Relaxed);
                }
                i += 1;
            }
        });
        Self {
            stop,
            written,
            failed,
            task,
        }
    }

    /// Stops the load, prints what it met while `what`, and checks that no
    /// request failed, but for at most one write per etcd member rolled
    /// meanwhile (`etcd_rolled`) that etcd dropped as its leadership moved
    /// ([`ETCD_LEADER_MOVED`]).
    async fn stop_unharmed(self, what: &str, etcd_rolled: usize) {
        let failed = self.failed.count();
        let leader_moved = self.failed.leader_moved();
        let retries = self.failed.retries();
        let said = self.failed.said_since(0);
        let written = self.stop().await;
        eprintln!(
            "while {what}: {written} writes, {failed} failed requests ({leader_moved} dropped by etcd as its leader moved), {retries} answered 429 Retry-After or not taken (GOAWAY) and sent again: {said:#?}"
        );
        assert_eq!(
            failed - leader_moved,
            0,
            "no request failed while {what}: {said:#?}"
        );
        assert!(
            leader_moved <= etcd_rolled,
            "at most one write per etcd member rolled ({etcd_rolled}) is dropped as its leader moves while {what}: {said:#?}"
        );
    }

    /// Stops the load; returns how many writes it made.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.written.load(Ordering::Relaxed)
    }
}

/// The tenant's etcd members.
const ETCD_MEMBERS: usize = 3;

/// The load's failed requests: how many, and what the first ones said;
/// and how many were sent again because the server said it did not take
/// them: 429 with Retry-After (a stopping apiserver's "ask again", which
/// client-go follows without a word) or an HTTP/2 stream a GOAWAY left
/// out ([`not_taken`]).
#[derive(Default)]
struct Failures {
    count: AtomicUsize,
    said: std::sync::Mutex<Vec<String>>,
    retries: AtomicUsize,
    leader_moved: AtomicUsize,
}

/// What etcd answers a write it took but dropped as its leadership moved
/// to another member, after its request timeout: an etcd member stopping
/// gracefully (a roll) hands its leadership over, and the writes proposed
/// to it meanwhile are lost; the apiserver answers 500, and whether the
/// write happened is not known. A roll of etcd's members (a renewal of
/// their certificates) moves the leadership at least once
/// (docs/operations.md).
const ETCD_LEADER_MOVED: &str = "possibly due to previous leader failure";

/// Whether the request is to be sent again: the server said it did not
/// take it ("too many requests, ask again", what an apiserver gives while
/// it finishes its requests before it stops; or [`not_taken`]).
fn to_send_again(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == 429) || not_taken(error)
}

impl Failures {
    fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    fn retries(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }

    fn note(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if what.contains(ETCD_LEADER_MOVED) {
            self.leader_moved.fetch_add(1, Ordering::Relaxed);
        }
        let mut said = self.said.lock().unwrap();
        if said.len() < 200 {
            said.push(what);
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn leader_moved(&self) -> usize {
        self.leader_moved.load(Ordering::Relaxed)
    }

    /// What the failures after the first `from` said.
    fn said_since(&self, from: usize) -> Vec<String> {
        self.said
            .lock()
            .unwrap()
            .iter()
            .skip(from)
            .cloned()
            .collect()
    }
}

/// Creates until it exists (a retry after a create whose answer was lost
/// finds it there: 409).
async fn create<K>(api: &Api<K>, object: serde_json::Value, failed: &Failures)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    let started = Instant::now();
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) if to_send_again(&e) => {
                failed.note_retry();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                let said = format!("{} {}: {e}", K::kind(&()), api.resource_url());
                // A refusal that lasts is a failure of the test, not a
                // fault to ride out: it fails instead of hanging.
                assert!(
                    started.elapsed() < Duration::from_secs(180),
                    "a create failed for 3 minutes: {said}"
                );
                failed.note(said);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Deletes until it is gone.
async fn delete<K>(api: &Api<K>, name: &str, failed: &Failures)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    loop {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) if to_send_again(&e) => {
                failed.note_retry();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                failed.note(format!("{} {}: {e}", K::kind(&()), api.resource_url()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What differs between the tenant's namespace [`LOAD`] and its host
/// copies, kind by kind: lost (no copy), duplicated (two copies of one
/// object), orphaned (a copy of nothing); empty when they match.
async fn differences(host: &Client, workloads: &str, tenant: &Client) -> String {
    let mut said = Vec::new();
    said.extend(kind_differences::<ConfigMap>(host, workloads, tenant).await);
    said.extend(kind_differences::<Secret>(host, workloads, tenant).await);
    said.extend(kind_differences::<Service>(host, workloads, tenant).await);
    said.extend(kind_differences::<Pod>(host, workloads, tenant).await);
    said.join("; ")
}

async fn kind_differences<K>(host: &Client, workloads: &str, tenant: &Client) -> Vec<String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    let tenant_names = match Api::<PartialObjectMeta<K>>::namespaced(tenant.clone(), LOAD)
        .list_metadata(&ListParams::default())
        .await
    {
        Ok(list) => list.items.iter().map(|o| o.name_any()).collect::<Vec<_>>(),
        Err(e) => return vec![format!("listing the tenant's {kind}s: {e}")],
    };
    let copies = match Api::<PartialObjectMeta<K>>::namespaced(host.clone(), workloads)
        .list_metadata(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => return vec![format!("listing the host's {kind}s: {e}")],
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for copy in &copies {
        if let Some((namespace, name)) = origin(copy.metadata.annotations.as_ref())
            && namespace == LOAD
        {
            *counts.entry(name).or_default() += 1;
        }
    }
    let mut said = Vec::new();
    let lost: Vec<&String> = tenant_names
        .iter()
        .filter(|n| !counts.contains_key(*n))
        .collect();
    if !lost.is_empty() {
        said.push(format!("{} {kind}s lost: {lost:?}", lost.len()));
    }
    let duplicated: Vec<&String> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| n)
        .collect();
    if !duplicated.is_empty() {
        said.push(format!(
            "{} {kind}s duplicated: {duplicated:?}",
            duplicated.len()
        ));
    }
    let orphaned: Vec<&String> = counts
        .keys()
        .filter(|n| !tenant_names.contains(n))
        .collect();
    if !orphaned.is_empty() {
        said.push(format!("{} {kind}s orphaned: {orphaned:?}", orphaned.len()));
    }
    said
}

const MANY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: many, namespace: load }
spec:
  replicas: 200
  selector: { matchLabels: { app: many } }
  template:
    metadata: { labels: { app: many } }
    spec:
      automountServiceAccountToken: false
      dnsPolicy: Default
      tolerations: [{ key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule }]
      securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: RuntimeDefault } }
      containers:
        - name: app
          image: vnest.local/busybox:1
          command: [sleep, "3600"]
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
"#;
