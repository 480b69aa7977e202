//! The CRD under manifests/ is generated; this fails when it is stale.

#[test]
fn the_crd_manifest_is_what_the_types_generate() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/crd/virtualcluster.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = match vnest_api::crds_yaml() {
        Ok(yaml) => yaml,
        Err(e) => panic!("rendering the CRD: {e}"),
    };
    assert!(
        committed == generated,
        "manifests/crd/virtualcluster.yaml is stale; regenerate it with\n  \
         cargo run -p vnest-api --bin vnest-crdgen > manifests/crd/virtualcluster.yaml"
    );
}
