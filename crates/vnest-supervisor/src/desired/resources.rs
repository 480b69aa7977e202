//! Resource requests of the control-plane containers: what the spec gives,
//! or vnest's defaults, which ask for about what an idle tenant's component
//! uses on the development host (docs/benchmarks.md: apiserver 300–380 MiB,
//! controller-manager ~130 MiB, etcd ~60 MiB, syncer ~20 MiB), so the host's
//! scheduler places control planes by what they use and the kubelet evicts
//! the ones that outgrow their request first. No default limits: a limit
//! below a busy tenant's need would OOM-kill its control plane; an admin
//! who wants them sets them in the spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vnest_api::VirtualCluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    ApiServer,
    ControllerManager,
    Etcd,
    Syncer,
    Scheduler,
}

impl Component {
    /// vnest's default requests: CPU, memory.
    pub fn default_requests(self) -> (&'static str, &'static str) {
        match self {
            Component::ApiServer => ("50m", "256Mi"),
            Component::ControllerManager => ("10m", "96Mi"),
            Component::Etcd => ("20m", "64Mi"),
            Component::Syncer => ("10m", "32Mi"),
            Component::Scheduler => ("10m", "48Mi"),
        }
    }
}

/// The requirements of `component`'s container in `vc`.
pub fn requirements(vc: &VirtualCluster, component: Component) -> ResourceRequirements {
    let plane = &vc.spec.control_plane;
    let given = match component {
        Component::ApiServer => plane.resources.as_ref(),
        Component::ControllerManager => plane.component_resources.controller_manager.as_ref(),
        Component::Etcd => plane.component_resources.etcd.as_ref(),
        Component::Syncer => plane.component_resources.syncer.as_ref(),
        Component::Scheduler => plane.component_resources.scheduler.as_ref(),
    };
    given.cloned().unwrap_or_else(|| {
        let (cpu, memory) = component.default_requests();
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(memory.to_owned())),
            ])),
            ..ResourceRequirements::default()
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::desired::test_cluster;

    #[test]
    fn every_component_requests_something_by_default_and_nothing_is_limited() {
        let vc = test_cluster();
        for component in [
            Component::ApiServer,
            Component::ControllerManager,
            Component::Etcd,
            Component::Syncer,
            Component::Scheduler,
        ] {
            let r = requirements(&vc, component);
            let requests = r.requests.unwrap();
            assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
            assert!(r.limits.is_none(), "{component:?}");
        }
    }

    #[test]
    fn the_spec_replaces_the_defaults_per_component() {
        let mut vc = test_cluster();
        let given = ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("1Gi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        };
        vc.spec.control_plane.component_resources.etcd = Some(given.clone());
        assert_eq!(requirements(&vc, Component::Etcd), given);
        assert_ne!(requirements(&vc, Component::Syncer), given);
        vc.spec.control_plane.resources = Some(given.clone());
        assert_eq!(requirements(&vc, Component::ApiServer), given);
    }
}
