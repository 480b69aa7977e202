//! What a measurement asked of each apiserver: the apiserver's own
//! `apiserver_request_total` counters, read before and after, their
//! difference per object by verb and resource. Every client of that
//! apiserver counts (the host's scheduler and kubelets too, the same for
//! every route), so the routes' differences are what tell.

use std::collections::BTreeMap;

use kube::Client;

/// Requests served, by `VERB resource[/subresource]`.
pub type Counts = BTreeMap<String, f64>;

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

fn parse(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
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
        let mut key = format!("{} {}", label("verb"), label("resource"));
        let subresource = label("subresource");
        if !subresource.is_empty() {
            key = format!("{key}/{subresource}");
        }
        *counts.entry(key).or_default() += value;
    }
    counts
}

/// Requests per object between `before` and `after`, the most first,
/// leaving out what came to less than one per 20 objects.
pub fn per_object(before: &Counts, after: &Counts, objects: usize) -> Vec<(String, f64)> {
    let mut per: Vec<(String, f64)> = after
        .iter()
        .map(|(key, n)| {
            let was = before.get(key).copied().unwrap_or(0.0);
            (key.clone(), (n - was) / objects.max(1) as f64)
        })
        .filter(|(_, n)| *n >= 0.05)
        .collect();
    per.sort_by(|a, b| b.1.total_cmp(&a.1));
    per
}

/// `per_object` as one line: `POST pods 1.00, PATCH pods/status 2.01, …`.
pub fn line(per: &[(String, f64)]) -> String {
    per.iter()
        .map(|(key, n)| format!("{key} {n:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
