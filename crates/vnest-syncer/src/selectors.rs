//! Label selectors written in a tenant namespace's terms, as they select on
//! the host: all of a tenant's pods share one host namespace, so "this
//! namespace" and "namespaces labelled so" become conditions on the labels
//! the syncer puts on every host pod (its tenant namespace, and that
//! namespace's labels under [`namespace_label_key`]). NetworkPolicy peers
//! and pod (anti-)affinity terms both go through here.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use vnest_api::pod_network::namespace_label_key;

use crate::naming::TENANT_NAMESPACE;

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

/// `pods` narrowed to tenant namespace `namespace`.
pub fn in_namespace(mut pods: LabelSelector, namespace: &str) -> LabelSelector {
    pods.match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TENANT_NAMESPACE.to_owned(), namespace.to_owned());
    pods
}

/// `pods` in the tenant namespaces `namespaces` selects, as one pod
/// selector on the namespace labels the host pods carry; `None` when a
/// namespace label cannot be carried (no pod matches it then).
pub fn in_namespaces(mut pods: LabelSelector, namespaces: LabelSelector) -> Option<LabelSelector> {
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
pub fn in_namespace_list(mut pods: LabelSelector, namespaces: &[String]) -> LabelSelector {
    pods.match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: TENANT_NAMESPACE.to_owned(),
            operator: "In".to_owned(),
            values: Some(namespaces.to_vec()),
        });
    pods
}
