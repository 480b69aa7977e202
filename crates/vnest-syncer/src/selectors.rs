//! Label selectors written in a tenant namespace's terms, as they select on
//! the host: all of a tenant's pods share one host namespace, so "this
//! namespace" and "namespaces labelled so" become conditions on the labels
//! the syncer puts on every host pod (its tenant namespace, and that
//! namespace's labels under [`namespace_label_key`]). NetworkPolicy peers
//! and pod (anti-)affinity terms both go through here.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use vnest_api::PodLabels;
use vnest_api::pod_network::{namespace_label_key, pod_label_key};

use vnest_api::host_copies::TENANT_NAMESPACE;

/// Every pod of the tenant (in its workloads namespace).
pub fn tenant_pods() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![exists(TENANT_NAMESPACE)]),
        ..LabelSelector::default()
    }
}

pub fn exists(key: &str) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: "Exists".to_owned(),
        values: None,
    }
}

/// Tenant pod selector `pods` over the labels its pods carry on the host.
fn pods_on_host(pods: LabelSelector, labels: PodLabels) -> LabelSelector {
    LabelSelector {
        match_labels: pods.match_labels.map(|m| {
            m.into_iter()
                .map(|(key, value)| (pod_label_key(&key, labels), value))
                .collect()
        }),
        match_expressions: pods.match_expressions.map(|requirements| {
            requirements
                .into_iter()
                .map(|mut r| {
                    r.key = pod_label_key(&r.key, labels);
                    r
                })
                .collect()
        }),
    }
}

/// Tenant pod selector `pods`, narrowed to tenant namespace `namespace`.
pub fn in_namespace(pods: LabelSelector, namespace: &str, labels: PodLabels) -> LabelSelector {
    let mut pods = pods_on_host(pods, labels);
    pods.match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TENANT_NAMESPACE.to_owned(), namespace.to_owned());
    pods
}

/// `pods` in the tenant namespaces `namespaces` selects, as one pod
/// selector on the namespace labels the host pods carry; `None` when a
/// namespace label cannot be carried (no pod matches it then).
pub fn in_namespaces(
    pods: LabelSelector,
    namespaces: LabelSelector,
    labels: PodLabels,
) -> Option<LabelSelector> {
    let mut pods = pods_on_host(pods, labels);
    for (key, value) in namespaces.match_labels.unwrap_or_default() {
        pods.match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(namespace_label_key(&key)?, value);
    }
    for mut requirement in namespaces.match_expressions.unwrap_or_default() {
        requirement.key = namespace_label_key(&requirement.key)?;
        pods.match_expressions
            .get_or_insert_with(Vec::new)
            .push(requirement);
    }
    pods.match_expressions
        .get_or_insert_with(Vec::new)
        .push(exists(TENANT_NAMESPACE));
    Some(pods)
}

/// `pods` in any of the tenant namespaces `namespaces`.
pub fn in_namespace_list(
    pods: LabelSelector,
    namespaces: &[String],
    labels: PodLabels,
) -> LabelSelector {
    let mut pods = pods_on_host(pods, labels);
    pods.match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: TENANT_NAMESPACE.to_owned(),
            operator: "In".to_owned(),
            values: Some(namespaces.to_vec()),
        });
    pods
}
