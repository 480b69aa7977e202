//! Tenant objects read without their status, for kinds whose status the
//! syncer never uses and whose status types cannot read every object the
//! apiserver stores: a Service condition without `lastTransitionTime` (a
//! client may write one) fails k8s-openapi's `Condition`, and one such
//! Service would stop the whole watch of Services.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

/// `K` as read without its `status` (and written as `K`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Statusless<K>(pub K);

impl<'de, K: DeserializeOwned> Deserialize<'de> for Statusless<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        if let Some(object) = value.as_object_mut() {
            object.remove("status");
        }
        serde_json::from_value(value)
            .map(Statusless)
            .map_err(D::Error::custom)
    }
}

impl<K: k8s_openapi::Resource> k8s_openapi::Resource for Statusless<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta>> k8s_openapi::Metadata for Statusless<K> {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        self.0.metadata()
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        self.0.metadata_mut()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    /// What the apiserver stores after a client sets a condition with no
    /// time (the conformance test "should complete a service status
    /// lifecycle" does).
    fn stored() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "s", "namespace": "default" },
            "spec": { "clusterIP": "10.96.0.20", "ports": [{ "port": 80 }] },
            "status": { "conditions": [{ "type": "StatusUpdate", "status": "True",
                "reason": "E2E", "message": "Set from e2e test", "lastTransitionTime": null }] }
        })
    }

    #[test]
    fn a_service_with_a_timeless_condition_is_read_without_its_status() {
        assert!(
            serde_json::from_value::<Service>(stored()).is_err(),
            "k8s-openapi still refuses it (else this type is not needed)"
        );
        let read: Statusless<Service> = serde_json::from_value(stored()).unwrap();
        assert_eq!(read.0.metadata.name.as_deref(), Some("s"));
        assert_eq!(
            read.0.spec.unwrap().cluster_ip.as_deref(),
            Some("10.96.0.20")
        );
        assert!(read.0.status.is_none());
    }

    #[test]
    fn it_is_written_and_addressed_as_the_kind_it_wraps() {
        use kube::Resource;
        let read: Statusless<Service> = serde_json::from_value(stored()).unwrap();
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(written["kind"], "Service");
        assert_eq!(written["spec"]["clusterIP"], "10.96.0.20");
        assert_eq!(Statusless::<Service>::plural(&()), "services");
        assert_eq!(Statusless::<Service>::api_version(&()), "v1");
        assert_eq!(read.meta().name.as_deref(), Some("s"));
    }
}
