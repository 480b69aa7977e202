//! A pod's choice of nodes as the tenant made it: against the labels of
//! the tenant's Node copies, not the host's nodes.
//!
//! A tenant may label its copies of the pool's nodes (`kubectl label
//! node`), and a pod's `nodeSelector` or required node affinity may then
//! name those labels. The host never sees them: a tenant labelling shared
//! nodes would steer other tenants' pods. So when a pod's required node
//! selection names a label key whose values differ between a tenant copy
//! and its host node, the syncer evaluates the selection against the
//! tenant's copies and gives the host pod the names of the nodes that
//! match (one required term per node: `metadata.name In [node]`), besides
//! the pool's selector; the host scheduler still chooses among them by
//! resources, ports and taints. A selection naming only labels the two
//! agree on goes to the host as written, so pods can still wait for nodes
//! the pool gains later (an autoscaler's). The names are fixed when the
//! host pod is made: a pod waiting for a label a node gets later waits
//! for the host pod to be made again.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
};

pub type Labels = BTreeMap<String, String>;

/// The pool's nodes by name: their labels as the tenant's copies have them
/// and as the host's nodes do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolLabels {
    pub tenant: BTreeMap<String, Labels>,
    pub host: BTreeMap<String, Labels>,
}

/// A name no node has: the one term of a pod no tenant node matches, which
/// keeps its host pod unschedulable (an empty term list would match all).
const NO_NODE: &str = "no-node-matches.vnest.dev";

impl PoolLabels {
    /// The label keys whose value (or presence) differs on some node
    /// between the tenant's copy and the host's node.
    fn tenant_only_keys(&self) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        for (node, tenant) in &self.tenant {
            let host = self.host.get(node);
            let host_value = |key: &str| host.and_then(|h| h.get(key));
            let host_keys = host.into_iter().flat_map(|h| h.keys());
            for key in tenant.keys().chain(host_keys) {
                if tenant.get(key) != host_value(key) {
                    keys.insert(key.as_str());
                }
            }
        }
        keys
    }
}

/// Whether a node of `labels` named `name` meets requirement `r` over its
/// labels (`fields`: over its fields, of which only `metadata.name` is).
fn meets(r: &NodeSelectorRequirement, name: &str, labels: &Labels, fields: bool) -> bool {
    let value = if fields {
        (r.key == "metadata.name").then_some(name)
    } else {
        labels.get(&r.key).map(String::as_str)
    };
    let values = r.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether term `t` selects the node (a term without requirements selects
/// none, as the scheduler reads it).
fn term_selects(t: &NodeSelectorTerm, name: &str, labels: &Labels) -> bool {
    let expressions = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    (!expressions.is_empty() || !fields.is_empty())
        && expressions.iter().all(|r| meets(r, name, labels, false))
        && fields.iter().all(|r| meets(r, name, labels, true))
}

/// A pod's required node affinity.
pub fn required(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// Whether pod `spec` may run on the node: its `nodeSelector` and its
/// required node affinity (any of its terms).
fn selects(spec: &PodSpec, name: &str, labels: &Labels) -> bool {
    let selector = spec.node_selector.iter().flatten();
    let by_selector = selector.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let by_affinity = required(spec).is_none_or(|r| {
        r.node_selector_terms
            .iter()
            .any(|t| term_selects(t, name, labels))
    });
    by_selector && by_affinity
}

/// The label keys pod `spec`'s required node selection names.
fn keys_named(spec: &PodSpec) -> BTreeSet<&str> {
    let mut keys: BTreeSet<&str> = spec
        .node_selector
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    for term in required(spec).iter().flat_map(|r| &r.node_selector_terms) {
        keys.extend(
            term.match_expressions
                .iter()
                .flatten()
                .map(|r| r.key.as_str()),
        );
    }
    keys
}

/// Tenant pod `spec`'s node selection as its host pod must carry it (see
/// the module): unchanged unless it names a label the tenant's copies and
/// the host's nodes disagree on; then no `nodeSelector`, and required node
/// affinity to the names of the nodes whose tenant copies it selects.
pub fn on_host(spec: &mut PodSpec, pool: &PoolLabels) {
    let tenant_only = pool.tenant_only_keys();
    if keys_named(spec).is_disjoint(&tenant_only) {
        return;
    }
    let mut names: Vec<&str> = pool
        .tenant
        .iter()
        .filter(|(name, labels)| selects(spec, name, labels))
        .map(|(name, _)| name.as_str())
        .collect();
    if names.is_empty() {
        names.push(NO_NODE);
    }
    let terms = names
        .into_iter()
        .map(|name| NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".to_owned(),
                operator: "In".to_owned(),
                values: Some(vec![name.to_owned()]),
            }]),
            match_expressions: None,
        })
        .collect();
    spec.node_selector = None;
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: terms,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Two nodes; the tenant labelled node2 `disk=ssd` and took node1's
    /// `zone` away.
    fn pool() -> PoolLabels {
        let node1 = labels(&[("zone", "a"), ("kubernetes.io/hostname", "node1")]);
        let node2 = labels(&[("zone", "b"), ("kubernetes.io/hostname", "node2")]);
        let mut tenant2 = node2.clone();
        tenant2.insert("disk".into(), "ssd".into());
        PoolLabels {
            tenant: BTreeMap::from([
                (
                    "node1".into(),
                    labels(&[("kubernetes.io/hostname", "node1")]),
                ),
                ("node2".into(), tenant2),
            ]),
            host: BTreeMap::from([("node1".into(), node1), ("node2".into(), node2)]),
        }
    }

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    fn names(spec: &PodSpec) -> Vec<String> {
        required(spec)
            .unwrap()
            .node_selector_terms
            .iter()
            .map(|t| t.match_fields.as_ref().unwrap()[0].values.as_ref().unwrap()[0].clone())
            .collect()
    }

    #[test]
    fn a_selection_of_labels_the_host_agrees_on_goes_as_written() {
        for pod in [
            serde_json::json!({"containers": [], "nodeSelector": {"kubernetes.io/hostname": "node1"}}),
            serde_json::json!({"containers": []}),
        ] {
            let mut s = spec(pod);
            let before = s.clone();
            on_host(&mut s, &pool());
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_label_of_the_tenants_selects_by_node_name() {
        let mut s = spec(serde_json::json!({
            "containers": [], "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]}},
        }));
        on_host(&mut s, &pool());
        assert_eq!(s.node_selector, None);
        assert_eq!(names(&s), ["node2"]);
        // What the host decides alone stays.
        let affinity = s.affinity.unwrap().node_affinity.unwrap();
        assert!(
            affinity
                .preferred_during_scheduling_ignored_during_execution
                .is_some()
        );
    }

    #[test]
    fn required_affinity_is_judged_as_the_scheduler_judges_it() {
        // `zone` differs (the tenant took it off node1): every operator
        // reads the tenant's copies.
        let cases = [
            (
                serde_json::json!([{"key": "zone", "operator": "DoesNotExist"}]),
                vec!["node1"],
            ),
            (
                serde_json::json!([{"key": "zone", "operator": "In", "values": ["b"]}]),
                vec!["node2"],
            ),
            (
                serde_json::json!([{"key": "zone", "operator": "NotIn", "values": ["b"]}]),
                vec!["node1"],
            ),
            (
                serde_json::json!([{"key": "zone", "operator": "Exists"},
                                   {"key": "disk", "operator": "In", "values": ["hdd"]}]),
                vec![NO_NODE],
            ),
            (
                serde_json::json!([{"key": "zone", "operator": "Gt", "values": ["1"]}]),
                vec![NO_NODE],
            ),
        ];
        for (expressions, expected) in cases {
            let mut s = spec(
                serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": expressions}]}}}}),
            );
            on_host(&mut s, &pool());
            assert_eq!(names(&s), expected, "{expressions}");
        }
        // A DaemonSet's pod: its node by name, and the tenant's label.
        let mut s = spec(
            serde_json::json!({"containers": [], "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["node1"]}]}]}}}}),
        );
        on_host(&mut s, &pool());
        assert_eq!(names(&s), [NO_NODE]);
    }
}
