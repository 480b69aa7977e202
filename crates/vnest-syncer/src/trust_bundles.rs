//! ClusterTrustBundle projections, filled from the tenant's bundles. The
//! host kubelet would fill them from the host's, so the syncer resolves
//! each as a kubelet would (by name, or by signer and label selector) and
//! puts the result in the pod's Secret ([`crate::translate::pod_secret_name`]),
//! which the host pod projects at the same path. Pure: the bundles are
//! read by the caller.

use base64::Engine;
use k8s_openapi::api::certificates::v1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::ClusterTrustBundleProjection;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeSet;

/// The trust anchors `source` selects from `bundles`: every certificate of
/// the selected bundles once, PEM-encoded, in a stable order. A source
/// that selects nothing gets an empty file when it is optional, and
/// `None` otherwise: the host kubelet then cannot mount the pod's volume
/// and the pod waits, as it would for its own kubelet.
///
/// As the kubelet reads a selector: a missing one selects nothing, an
/// empty one every bundle of the signer.
pub fn anchors(
    source: &ClusterTrustBundleProjection,
    bundles: &[ClusterTrustBundle],
) -> Option<String> {
    let selected: Vec<&ClusterTrustBundle> = match (&source.name, &source.signer_name) {
        (Some(name), _) => bundles
            .iter()
            .filter(|b| b.metadata.name.as_ref() == Some(name))
            .collect(),
        (None, Some(signer)) => {
            let selector = source
                .label_selector
                .clone()
                .and_then(|s| Selector::try_from(s).ok());
            bundles
                .iter()
                .filter(|b| b.spec.signer_name.as_ref() == Some(signer))
                .filter(|b| {
                    let labels = b.metadata.labels.clone().unwrap_or_default();
                    selector.as_ref().is_some_and(|s| s.matches(&labels))
                })
                .collect()
        }
        (None, None) => Vec::new(),
    };
    if selected.is_empty() {
        return source.optional.unwrap_or(false).then(String::new);
    }
    let certificates: BTreeSet<Vec<u8>> = selected
        .iter()
        .flat_map(|b| x509_parser::pem::Pem::iter_from_buffer(b.spec.trust_bundle.as_bytes()))
        .filter_map(Result::ok)
        .map(|pem| pem.contents)
        .collect();
    Some(
        certificates
            .iter()
            .map(|der| pem_certificate(der))
            .collect(),
    )
}

fn pem_certificate(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::certificates::v1::ClusterTrustBundleSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::api::ObjectMeta;

    /// A PEM block per name (the projection does not parse certificates:
    /// it deduplicates and re-encodes blocks).
    fn certificate(name: &str) -> String {
        pem_certificate(format!("certificate of {name}").as_bytes())
    }

    fn bundle(
        name: &str,
        signer: Option<&str>,
        labels: &[(&str, &str)],
        pems: &[&str],
    ) -> ClusterTrustBundle {
        ClusterTrustBundle {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: ClusterTrustBundleSpec {
                signer_name: signer.map(str::to_owned),
                trust_bundle: pems.concat(),
            },
        }
    }

    fn by_signer(
        selector: Option<LabelSelector>,
        optional: Option<bool>,
    ) -> ClusterTrustBundleProjection {
        ClusterTrustBundleProjection {
            signer_name: Some("example.com/one".to_owned()),
            label_selector: selector,
            optional,
            path: "bundle.pem".to_owned(),
            ..ClusterTrustBundleProjection::default()
        }
    }

    #[test]
    fn a_bundle_by_name_or_nothing() {
        let (a, b) = (certificate("a"), certificate("b"));
        let bundles = [bundle("roots", None, &[], &[&a, &b, &a])];
        let named = |name: &str, optional| ClusterTrustBundleProjection {
            name: Some(name.to_owned()),
            optional,
            path: "roots.pem".to_owned(),
            ..ClusterTrustBundleProjection::default()
        };
        let anchors_of_roots = anchors(&named("roots", None), &bundles).unwrap();
        assert_eq!(anchors_of_roots.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(anchors_of_roots.contains(a.lines().nth(1).unwrap()));
        assert!(anchors_of_roots.contains(b.lines().nth(1).unwrap()));
        assert_eq!(
            anchors(&named("missing", Some(true)), &bundles).as_deref(),
            Some("")
        );
        assert_eq!(anchors(&named("missing", None), &bundles), None);
    }

    #[test]
    fn bundles_by_signer_and_labels_as_the_kubelet_selects_them() {
        let (a, b, c, d) = (
            certificate("a"),
            certificate("b"),
            certificate("c"),
            certificate("d"),
        );
        let bundles = [
            bundle(
                "one-alive",
                Some("example.com/one"),
                &[("alive", "true")],
                &[&a],
            ),
            bundle(
                "one-dead",
                Some("example.com/one"),
                &[("alive", "false")],
                &[&b],
            ),
            bundle(
                "one-alive-too",
                Some("example.com/one"),
                &[("alive", "true")],
                &[&c, &a],
            ),
            bundle(
                "two-alive",
                Some("example.com/two"),
                &[("alive", "true")],
                &[&d],
            ),
        ];
        let alive = LabelSelector {
            match_labels: Some([("alive".to_owned(), "true".to_owned())].into()),
            ..LabelSelector::default()
        };
        let selected = anchors(&by_signer(Some(alive), None), &bundles).unwrap();
        assert_eq!(
            selected.matches("BEGIN CERTIFICATE").count(),
            2,
            "{selected}"
        );
        assert!(!selected.contains(b.lines().nth(1).unwrap()));
        assert!(!selected.contains(d.lines().nth(1).unwrap()));
        // Empty selects all of the signer's; missing selects none.
        let all = anchors(&by_signer(Some(LabelSelector::default()), None), &bundles).unwrap();
        assert_eq!(all.matches("BEGIN CERTIFICATE").count(), 3, "{all}");
        assert_eq!(
            anchors(&by_signer(None, Some(true)), &bundles).as_deref(),
            Some("")
        );
        assert_eq!(anchors(&by_signer(None, None), &bundles), None);
        let nothing = LabelSelector {
            match_labels: Some([("matches".to_owned(), "nothing".to_owned())].into()),
            ..LabelSelector::default()
        };
        assert_eq!(
            anchors(&by_signer(Some(nothing), Some(true)), &bundles).as_deref(),
            Some("")
        );
        // The same bundles in another order give the same file.
        let mut reversed = bundles.to_vec();
        reversed.reverse();
        assert_eq!(
            anchors(&by_signer(Some(LabelSelector::default()), None), &reversed).unwrap(),
            all
        );
    }
}
