//! The syncer's own account of a measurement: its pod syncs (how many,
//! how long they took on average, how many failed) from its `/metrics`,
//! read through the host apiserver's `pods/portforward` (the control
//! plane's NetworkPolicy keeps the bench's own connections out).

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vnest_api::host_names::{labels, syncer};

/// Where the syncer serves its health and metrics.
const HEALTH_PORT: u16 = 8080;

/// Running totals of one kind's syncs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Syncs {
    pub count: f64,
    pub seconds: f64,
    pub errors: f64,
}

impl Syncs {
    pub fn since(self, before: Syncs) -> Syncs {
        Syncs {
            count: self.count - before.count,
            seconds: self.seconds - before.seconds,
            errors: self.errors - before.errors,
        }
    }

    /// `N syncs per object, M ms each on average, E failed`.
    pub fn line(&self, objects: usize) -> String {
        format!(
            "{:.2} syncs per object, {:.0} ms each on average, {} failed",
            self.count / objects.max(1) as f64,
            1000.0 * self.seconds / self.count.max(1.0),
            self.errors
        )
    }
}

/// The pod syncs of the syncer in control-plane namespace `namespace` so
/// far; `None` when its metrics cannot be read (the measurement goes on
/// without them).
pub async fn pod_syncs(host: &Client, namespace: &str) -> Option<Syncs> {
    match metrics(host, namespace).await {
        Ok(text) => Some(parse(&text, "Pod")),
        Err(error) => {
            eprintln!("reading the syncer's metrics: {error}");
            None
        }
    }
}

async fn metrics(host: &Client, namespace: &str) -> Result<String, Box<dyn std::error::Error>> {
    let pods: Api<Pod> = Api::namespaced(host.clone(), namespace);
    let selector = format!("{}={}", labels::COMPONENT, syncer::COMPONENT);
    let name = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .find_map(|p| p.metadata.name)
        .ok_or("no syncer pod")?;
    let mut forward = pods.portforward(&name, &[HEALTH_PORT]).await?;
    let mut stream = forward
        .take_stream(HEALTH_PORT)
        .ok_or("no port-forward stream")?;
    // HTTP/1.0: the answer is the body to the end, never chunked.
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    drop(stream);
    // The answer is whole; the forward ends with the server's close, which
    // the WebSocket may report as an error.
    let _ = forward.join().await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (_, body) = response.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    Ok(body.to_owned())
}

fn parse(text: &str, kind: &str) -> Syncs {
    let label = format!("kind=\"{kind}\"");
    let sum = |metric: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    Syncs {
        count: sum("vnest_syncer_sync_duration_seconds_count"),
        seconds: sum("vnest_syncer_sync_duration_seconds_sum"),
        errors: sum("vnest_syncer_sync_errors_total"),
    }
}
