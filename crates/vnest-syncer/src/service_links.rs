//! Service environment variables, as the tenant's own kubelet would give
//! them: for every Service with a cluster address in the pod's namespace,
//! `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (and one per named port)
//! and the Docker-link variables (`<NAME>_PORT`, `<NAME>_PORT_<P>_<PROTO>`,
//! …). The host's kubelet would give the host namespace's Services, so host
//! pods get `enableServiceLinks: false` and the syncer writes these in
//! from the tenant's Services instead (the tenant's `default/kubernetes`
//! excepted: `KUBERNETES_SERVICE_*` already name the tenant apiserver).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EnvVar, Pod, Service};

/// The variables of `services` (the tenant's, of any namespace) that tenant
/// pod `pod` gets: none when it turned service links off, else those of
/// its namespace's Services, in name order.
pub fn env(pod: &Pod, services: &[&Service]) -> Vec<EnvVar> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.enable_service_links) == Some(false) {
        return Vec::new();
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut mine: Vec<&Service> = services
        .iter()
        .copied()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter(|s| !(namespace == "default" && s.metadata.name.as_deref() == Some("kubernetes")))
        .collect();
    mine.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    mine.into_iter().flat_map(of_service).collect()
}

/// `links` without the names a container already sets, ahead of its own:
/// a container's variable wins, and its own may refer to these (`$(…)`).
pub fn merged(links: &[EnvVar], own: Vec<EnvVar>) -> Vec<EnvVar> {
    let set: BTreeSet<String> = own.iter().map(|e| e.name.clone()).collect();
    links
        .iter()
        .filter(|e| !set.contains(&e.name))
        .cloned()
        .chain(own)
        .collect()
}

fn of_service(service: &Service) -> Vec<EnvVar> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ip.is_empty() || ip == "None" || ports.is_empty() {
        return Vec::new();
    }
    let prefix = variable_name(service.metadata.name.as_deref().unwrap_or_default());
    let var = |name: String, value: String| EnvVar {
        name,
        value: Some(value),
        ..EnvVar::default()
    };
    let host_port = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut vars = vec![
        var(format!("{prefix}_SERVICE_HOST"), ip.to_owned()),
        var(format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()),
    ];
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push(var(
                format!("{prefix}_SERVICE_PORT_{}", variable_name(name)),
                port.port.to_string(),
            ));
        }
    }
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let url = format!("{}://{}", protocol.to_lowercase(), host_port(port.port));
        if i == 0 {
            vars.push(var(format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        vars.push(var(port_prefix.clone(), url));
        vars.push(var(format!("{port_prefix}_PROTO"), protocol.to_lowercase()));
        vars.push(var(format!("{port_prefix}_PORT"), port.port.to_string()));
        vars.push(var(format!("{port_prefix}_ADDR"), ip.to_owned()));
    }
    vars
}

fn variable_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({ "metadata": { "name": name, "namespace": namespace }, "spec": spec }),
        )
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({ "metadata": { "name": "p", "namespace": "shop" }, "spec": spec }),
        )
        .unwrap()
    }

    fn pairs(vars: &[EnvVar]) -> Vec<(String, String)> {
        vars.iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn the_kubelets_variables_for_the_pods_namespace() {
        let web = service(
            "shop",
            "web-front",
            json!({ "clusterIP": "10.96.0.20", "ports": [
                { "name": "http", "port": 80 }, { "name": "dns", "port": 53, "protocol": "UDP" }] }),
        );
        let headless = service(
            "shop",
            "db",
            json!({ "clusterIP": "None", "ports": [{ "port": 5432 }] }),
        );
        let elsewhere = service(
            "other",
            "x",
            json!({ "clusterIP": "10.96.0.30", "ports": [{ "port": 1 }] }),
        );
        let vars = env(
            &pod(json!({ "containers": [] })),
            &[&web, &headless, &elsewhere],
        );
        let expected = [
            ("WEB_FRONT_SERVICE_HOST", "10.96.0.20"),
            ("WEB_FRONT_SERVICE_PORT", "80"),
            ("WEB_FRONT_SERVICE_PORT_HTTP", "80"),
            ("WEB_FRONT_SERVICE_PORT_DNS", "53"),
            ("WEB_FRONT_PORT", "tcp://10.96.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP", "tcp://10.96.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_80_TCP_PORT", "80"),
            ("WEB_FRONT_PORT_80_TCP_ADDR", "10.96.0.20"),
            ("WEB_FRONT_PORT_53_UDP", "udp://10.96.0.20:53"),
            ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
            ("WEB_FRONT_PORT_53_UDP_PORT", "53"),
            ("WEB_FRONT_PORT_53_UDP_ADDR", "10.96.0.20"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(pairs(&vars), expected);
    }

    #[test]
    fn links_off_and_the_tenant_apiserver_give_none_and_the_container_wins() {
        let web = service(
            "shop",
            "web",
            json!({ "clusterIP": "10.96.0.20", "ports": [{ "port": 80 }] }),
        );
        assert!(
            env(
                &pod(json!({ "containers": [], "enableServiceLinks": false })),
                &[&web]
            )
            .is_empty()
        );
        let kubernetes = service(
            "default",
            "kubernetes",
            json!({ "clusterIP": "10.96.0.1", "ports": [{ "port": 443 }] }),
        );
        let in_default: Pod = serde_json::from_value(
            json!({ "metadata": { "name": "p", "namespace": "default" }, "spec": { "containers": [] } }),
        )
        .unwrap();
        assert!(env(&in_default, &[&kubernetes]).is_empty());

        let links = env(&pod(json!({ "containers": [] })), &[&web]);
        let own = vec![EnvVar {
            name: "WEB_SERVICE_HOST".into(),
            value: Some("mine".into()),
            ..EnvVar::default()
        }];
        let all = merged(&links, own);
        let hosts: Vec<_> = all
            .iter()
            .filter(|e| e.name == "WEB_SERVICE_HOST")
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].value.as_deref(), Some("mine"));
        assert_eq!(
            all.last().unwrap().name,
            "WEB_SERVICE_HOST",
            "the container's own come last"
        );
    }
}
