//! Prometheus metrics of one syncer, served at `/metrics`:
//!
//! - `vnest_syncer_syncs_total{kind}`: reconciles that succeeded;
//! - `vnest_syncer_sync_errors_total{kind,error}`: reconciles that failed
//!   (retried), by what failed ([`crate::error::Error::metric_label`]);
//! - `vnest_syncer_sync_duration_seconds{kind}`: how long a reconcile took;
//! - `vnest_syncer_syncs_in_flight{kind}`: reconciles running now (bounded
//!   by the controllers' concurrency; kube-runtime does not expose the
//!   length of its queue);
//! - `vnest_syncer_refusals_total{rule}`: pods the policy refused, by rule;
//! - `vnest_syncer_kubelet_requests_total{kind,code}`: `logs`, `exec`,
//!   `attach` and `port-forward` calls of the tenant apiserver the kubelet
//!   proxy answered, by the HTTP status it answered with;
//! - `vnest_syncer_service_addresses_total{outcome}`: tenant Services the
//!   admission webhook gave a host address (`given`) or refused one
//!   (`refused`).

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncErrorLabel {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeletCallLabel {
    pub kind: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

type Histograms = Family<KindLabel, Histogram, fn() -> Histogram>;

fn sync_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    syncs: Family<KindLabel, Counter>,
    errors: Family<SyncErrorLabel, Counter>,
    durations: Histograms,
    in_flight: Family<KindLabel, Gauge>,
    refusals: Family<RuleLabel, Counter>,
    kubelet_requests: Family<KubeletCallLabel, Counter>,
    service_addresses: Family<OutcomeLabel, Counter>,
    certificate_reloads: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vnest_syncer");
        let syncs = Family::<KindLabel, Counter>::default();
        let errors = Family::<SyncErrorLabel, Counter>::default();
        let durations: Histograms = Family::new_with_constructor(sync_histogram);
        let in_flight = Family::<KindLabel, Gauge>::default();
        let refusals = Family::<RuleLabel, Counter>::default();
        let kubelet_requests = Family::<KubeletCallLabel, Counter>::default();
        let service_addresses = Family::<OutcomeLabel, Counter>::default();
        let certificate_reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register("syncs", "Reconciles that succeeded", syncs.clone());
        registry.register(
            "sync_errors",
            "Reconciles that failed and are retried",
            errors.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "How long one reconcile took",
            durations.clone(),
        );
        registry.register(
            "syncs_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        registry.register(
            "refusals",
            "Pods the policy refused, by rule",
            refusals.clone(),
        );
        registry.register(
            "kubelet_requests",
            "Kubelet API calls of the tenant apiserver the kubelet proxy answered",
            kubelet_requests.clone(),
        );
        registry.register(
            "service_addresses",
            "Tenant Services given a host address, or refused one, at creation",
            service_addresses.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Renewed certificate files taken without a restart, or found but not loadable",
            certificate_reloads.clone(),
        );
        Self {
            registry,
            syncs,
            errors,
            durations,
            in_flight,
            refusals,
            kubelet_requests,
            service_addresses,
            certificate_reloads,
        }
    }
}

/// One reconcile being measured; [`Sync::finish`] records its outcome.
pub struct Sync<'a> {
    metrics: &'a Metrics,
    label: KindLabel,
    started: Instant,
}

impl Metrics {
    pub fn start(&self, kind: &str) -> Sync<'_> {
        let label = KindLabel {
            kind: kind.to_owned(),
        };
        self.in_flight.get_or_create(&label).inc();
        Sync {
            metrics: self,
            label,
            started: Instant::now(),
        }
    }

    pub fn refused(&self, rule: &str) {
        self.refusals
            .get_or_create(&RuleLabel {
                rule: rule.to_owned(),
            })
            .inc();
    }

    pub fn kubelet_request(&self, kind: &str, code: u16) {
        self.kubelet_requests
            .get_or_create(&KubeletCallLabel {
                kind: kind.to_owned(),
                code,
            })
            .inc();
    }

    pub fn service_address(&self, outcome: &str) {
        self.service_addresses
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn certificates_reloaded(&self, outcome: &str) {
        self.certificate_reloads
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
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

impl Sync<'_> {
    /// Records the outcome: `None` when the reconcile succeeded, else what
    /// failed.
    pub fn finish(self, failed: Option<&str>) {
        let m = self.metrics;
        m.in_flight.get_or_create(&self.label).dec();
        m.durations
            .get_or_create(&self.label)
            .observe(self.started.elapsed().as_secs_f64());
        match failed {
            None => m.syncs.get_or_create(&self.label).inc(),
            Some(error) => m
                .errors
                .get_or_create(&SyncErrorLabel {
                    kind: self.label.kind.clone(),
                    error: error.to_owned(),
                })
                .inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_refusals_are_counted_by_label() {
        let metrics = Metrics::default();
        metrics.start("Pod").finish(None);
        metrics.start("Pod").finish(Some("host_api"));
        let open = metrics.start("ConfigMap");
        metrics.refused("privileged");
        let text = metrics.render();
        assert!(
            text.contains(r#"vnest_syncer_syncs_total{kind="Pod"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vnest_syncer_sync_errors_total{kind="Pod",error="host_api"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vnest_syncer_syncs_in_flight{kind="ConfigMap"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vnest_syncer_refusals_total{rule="privileged"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vnest_syncer_sync_duration_seconds_count{kind="Pod"} 2"#),
            "{text}"
        );
        open.finish(None);
    }
}
