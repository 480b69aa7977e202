//! What a measurement asked of each apiserver: the apiserver's own
//! `apiserver_request_duration_seconds` (count and sum), read before and
//! after, their difference per object by verb and resource, with the mean
//! time a request took; and the time requests waited in each API Priority
//! and Fairness level (`apiserver_flowcontrol_request_wait_duration_seconds`,
//! as `wait <level>`). Every client of that apiserver counts (the host's
//! scheduler and kubelets too, the same for every route), so the routes'
//! differences are what tell.

use std::collections::BTreeMap;

use kube::Client;

/// Requests served and the seconds they took, by `VERB
/// resource[/subresource]` (or `wait <priority level>`).
pub type Counts = BTreeMap<String, Served>;

/// Running totals of one kind of request, as the apiserver counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Served {
    pub count: f64,
    /// Their seconds, summed.
    pub seconds: f64,
}

/// One kind of request over a measurement.
#[derive(Clone, Copy, Debug)]
pub struct PerObject {
    /// How many per object.
    pub requests: f64,
    /// The mean seconds one took.
    pub mean_seconds: f64,
}

/// The apiserver's request counters now (empty if it does not answer:
/// the measurement goes on without them).
pub async fn read(client: &Client) -> Counts {
    let Ok(request) = http::Request::get("/metrics").body(Vec::new()) else {
        return Counts::new();
    };
    match client.request_text(request).await {
        Ok(text) => parse(&text),
        Err(error) => {
            eprintln!("reading /metrics: {error}");
            Counts::new()
        }
    }
}

const REQUESTS: &str = "apiserver_request_duration_seconds";
const WAITS: &str = "apiserver_flowcontrol_request_wait_duration_seconds";

fn parse(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some((metric, rest)) = line.split_once('{') else {
            continue;
        };
        let (family, count) = match metric.rsplit_once('_') {
            Some((family, "count")) => (family, true),
            Some((family, "sum")) => (family, false),
            _ => continue,
        };
        if family != REQUESTS && family != WAITS {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let key = if family == WAITS {
            // Rejected requests did not wait for a seat: left out.
            if label("execute") != "true" {
                continue;
            }
            format!("wait {}", label("priority_level"))
        } else {
            let verb = label("verb");
            // A watch lasts as long as it is open.
            if verb == "WATCH" {
                continue;
            }
            match label("subresource").as_str() {
                "" => format!("{verb} {}", label("resource")),
                subresource => format!("{verb} {}/{subresource}", label("resource")),
            }
        };
        let served = counts.entry(key).or_default();
        if count {
            served.count += value;
        } else {
            served.seconds += value;
        }
    }
    counts
}

/// Requests between `before` and `after`: how many per object and the
/// mean seconds each took, the most first, leaving out what came to less
/// than one per 20 objects.
pub fn per_object(before: &Counts, after: &Counts, objects: usize) -> Vec<(String, PerObject)> {
    let mut per: Vec<(String, PerObject)> = after
        .iter()
        .map(|(key, now)| {
            let was = before.get(key).copied().unwrap_or_default();
            let count = now.count - was.count;
            let per = PerObject {
                requests: count / objects.max(1) as f64,
                mean_seconds: (now.seconds - was.seconds) / count.max(1.0),
            };
            (key.clone(), per)
        })
        .filter(|(_, per)| per.requests >= 0.05)
        .collect();
    per.sort_by(|a, b| b.1.requests.total_cmp(&a.1.requests));
    per
}

/// `per_object` as one line: `POST pods 1.00 (12 ms), PATCH pods/status
/// 2.01 (8 ms), …`.
pub fn line(per: &[(String, PerObject)]) -> String {
    per.iter()
        .map(|(key, n)| {
            format!(
                "{key} {:.2} ({:.0} ms)",
                n.requests,
                n.mean_seconds * 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
