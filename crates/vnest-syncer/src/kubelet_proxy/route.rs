//! Which kubelet API call the tenant apiserver made, and the host
//! apiserver's subresource that answers it. Pure: no I/O.
//!
//! The kubelet serves `/containerLogs/{ns}/{pod}/{container}`,
//! `/exec|/attach/{ns}/{pod}[/{uid}]/{container}` and
//! `/portForward/{ns}/{pod}[/{uid}]`; the host apiserver serves the same
//! through `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`,
//! with other query parameter names. Nothing else is served: stats,
//! metrics, `/run`, `/pods` and the debugging handlers of a real kubelet
//! would tell a tenant about the host.

use vnest_api::host_copies;

/// A kubelet call the proxy serves, naming the tenant pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletCall {
    pub kind: CallKind,
    pub namespace: String,
    pub pod: String,
    /// Empty for port-forward.
    pub container: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Logs,
    Exec,
    Attach,
    PortForward,
}

impl CallKind {
    /// Whether the call turns into a bidirectional stream (an HTTP upgrade).
    pub fn upgrades(self) -> bool {
        !matches!(self, CallKind::Logs)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Logs => "logs",
            CallKind::Exec => "exec",
            CallKind::Attach => "attach",
            CallKind::PortForward => "portforward",
        }
    }

    fn subresource(self) -> &'static str {
        match self {
            CallKind::Logs => "log",
            other => other.as_str(),
        }
    }
}

/// The call behind a kubelet request path, or `None` for paths the proxy
/// does not serve.
pub fn parse(path: &str) -> Option<KubeletCall> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (kind, rest) = segments.split_first()?;
    let kind = match *kind {
        "containerLogs" => CallKind::Logs,
        "exec" => CallKind::Exec,
        "attach" => CallKind::Attach,
        "portForward" => CallKind::PortForward,
        _ => return None,
    };
    let (namespace, pod, container) = match (kind, rest) {
        (CallKind::Logs, [ns, pod, container]) => (ns, pod, *container),
        (CallKind::Exec | CallKind::Attach, [ns, pod, container])
        | (CallKind::Exec | CallKind::Attach, [ns, pod, _, container]) => (ns, pod, *container),
        (CallKind::PortForward, [ns, pod]) | (CallKind::PortForward, [ns, pod, _]) => (ns, pod, ""),
        _ => return None,
    };
    if namespace.is_empty()
        || pod.is_empty()
        || (kind != CallKind::PortForward && container.is_empty())
    {
        return None;
    }
    Some(KubeletCall {
        kind,
        namespace: (*namespace).to_owned(),
        pod: (*pod).to_owned(),
        container: container.to_owned(),
    })
}

/// The host apiserver path and query answering `call`, given the kubelet
/// request's query string and the tenant's workloads namespace.
pub fn host_path(call: &KubeletCall, query: Option<&str>, host_namespace: &str) -> String {
    let mut params: Vec<(String, String)> = form_pairs(query.unwrap_or_default())
        .into_iter()
        .filter_map(|(key, value)| {
            let key = match (call.kind, key.as_str()) {
                // Logs take the same options on both sides.
                (CallKind::Logs, "container") => return None,
                (CallKind::Logs, _) => key,
                (CallKind::Exec | CallKind::Attach, "input") => "stdin".to_owned(),
                (CallKind::Exec | CallKind::Attach, "output") => "stdout".to_owned(),
                (CallKind::Exec | CallKind::Attach, "error") => "stderr".to_owned(),
                (CallKind::Exec | CallKind::Attach, "command" | "tty") => key,
                (CallKind::PortForward, "port") => "ports".to_owned(),
                _ => return None,
            };
            let value = match (call.kind, value.as_str()) {
                (CallKind::Exec | CallKind::Attach, "1") if key != "command" => "true".to_owned(),
                _ => value,
            };
            Some((key, value))
        })
        .collect();
    if call.kind != CallKind::PortForward {
        params.push(("container".to_owned(), call.container.clone()));
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!(
        "/api/v1/namespaces/{}/pods/{}/{}?{}",
        host_namespace,
        host_copies::host_name(&call.namespace, &call.pod),
        call.kind.subresource(),
        query.join("&")
    )
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) if hex(high).is_some() && hex(low).is_some() => {
                let value = hex(high).unwrap_or_default() * 16 + hex(low).unwrap_or_default();
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 2;
            }
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubelet_paths_name_the_tenant_pod() {
        let call = parse("/containerLogs/web/api-0/main").unwrap();
        assert_eq!(
            call,
            KubeletCall {
                kind: CallKind::Logs,
                namespace: "web".into(),
                pod: "api-0".into(),
                container: "main".into(),
            }
        );
        let exec = parse("/exec/web/api-0/0f2c-uid/main").unwrap();
        assert_eq!(
            (exec.kind, exec.container.as_str()),
            (CallKind::Exec, "main")
        );
        let forward = parse("/portForward/web/api-0").unwrap();
        assert_eq!(
            (forward.kind, forward.pod.as_str()),
            (CallKind::PortForward, "api-0")
        );
        assert!(parse("/attach/web/api-0/main").unwrap().kind.upgrades());
    }

    #[test]
    fn nothing_else_of_a_kubelet_is_served() {
        for path in [
            "/stats/summary",
            "/metrics",
            "/pods",
            "/run/web/api-0/main",
            "/logs/",
            "/containerLogs/web/api-0",
            "/containerLogs/web//main",
            "/exec/web/api-0",
            "/portForward/web",
            "/",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    #[test]
    fn logs_go_to_the_host_pods_log_with_the_same_options() {
        let call = parse("/containerLogs/web/api-0/main").unwrap();
        let path = host_path(
            &call,
            Some("follow=true&tailLines=10&timestamps=true"),
            "t-wl",
        );
        assert_eq!(
            path,
            format!(
                "/api/v1/namespaces/t-wl/pods/{}/log?follow=true&tailLines=10&timestamps=true&container=main",
                host_copies::host_name("web", "api-0")
            )
        );
    }

    #[test]
    fn exec_streams_are_renamed_and_the_command_kept() {
        let call = parse("/exec/web/api-0/main").unwrap();
        let path = host_path(
            &call,
            Some("command=sh&command=-c&command=echo+a%26b&input=1&output=1&error=1&tty=1"),
            "t-wl",
        );
        assert!(path.ends_with(
            "/exec?command=sh&command=-c&command=echo%20a%26b&stdin=true&stdout=true&stderr=true&tty=true&container=main"
        ), "{path}");
    }

    #[test]
    fn port_forward_ports_and_nothing_unknown() {
        let call = parse("/portForward/web/api-0").unwrap();
        let path = host_path(&call, Some("port=8080&port=9090&nodeName=x"), "t-wl");
        assert!(
            path.ends_with("/portforward?ports=8080&ports=9090"),
            "{path}"
        );
    }
}
