//! Prometheus metrics of the supervisor, served at `/metrics` beside
//! `/healthz` and `/readyz`:
//!
//! - `vnest_supervisor_reconciles_total{outcome}`: reconciles that succeeded
//!   (`ok`) or failed and are retried, by what failed
//!   ([`crate::error::Error::kind`]: `host_api`, `apply`, `stopping`, …);
//! - `vnest_supervisor_reconcile_duration_seconds`: how long one took;
//! - `vnest_supervisor_virtual_clusters{phase}`: VirtualClusters by the
//!   phase the supervisor last saw on them (deleted ones leave).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabel, Counter>,
    durations: Histogram,
    phases: Family<PhaseLabel, Gauge>,
    /// `namespace/name` → phase, from which the gauge is recounted.
    known: Mutex<BTreeMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vnest_supervisor");
        let reconciles = Family::<OutcomeLabel, Counter>::default();
        // 10 ms to ~80 s.
        let durations = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let phases = Family::<PhaseLabel, Gauge>::default();
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile took",
            durations.clone(),
        );
        registry.register(
            "virtual_clusters",
            "VirtualClusters by their last seen phase",
            phases.clone(),
        );
        Self {
            registry,
            reconciles,
            durations,
            phases,
            known: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: &str, took: Duration) {
        self.reconciles
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.durations.observe(took.as_secs_f64());
    }

    /// Records `key`'s phase; `None` forgets it (the VirtualCluster is going).
    pub fn phase(&self, key: String, phase: Option<String>) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        match phase {
            Some(phase) => {
                known.insert(key, phase);
            }
            None => {
                known.remove(&key);
            }
        }
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for phase in known.values() {
            *counts.entry(phase).or_default() += 1;
        }
        self.phases.clear();
        for (phase, count) in counts {
            self.phases
                .get_or_create(&PhaseLabel {
                    phase: phase.to_owned(),
                })
                .set(count);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_counted_and_forgotten() {
        let metrics = Metrics::default();
        metrics.phase("t/a".into(), Some("Ready".into()));
        metrics.phase("t/b".into(), Some("Ready".into()));
        metrics.phase("t/c".into(), Some("Provisioning".into()));
        metrics.phase("t/c".into(), None);
        metrics.reconciled("ok", Duration::from_millis(20));
        metrics.reconciled("host_api", Duration::from_millis(20));
        let text = metrics.render();
        assert!(
            text.contains("vnest_supervisor_virtual_clusters{phase=\"Ready\"} 2"),
            "{text}"
        );
        assert!(!text.contains("Provisioning"), "forgotten: {text}");
        assert!(
            text.contains("vnest_supervisor_reconciles_total{outcome=\"host_api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vnest_supervisor_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
