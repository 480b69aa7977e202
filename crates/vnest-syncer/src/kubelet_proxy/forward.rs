//! A kubelet call answered by the host apiserver: logs streamed back, and
//! exec/attach/port-forward as an upgraded connection spliced between the
//! tenant apiserver and the host apiserver (which splices it on to the
//! real kubelet). The stream protocol (SPDY or WebSocket) passes through
//! untouched.

use http::header::{
    CONNECTION, CONTENT_TYPE, HeaderName, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::route::{self, KubeletCall};
use super::{ProxyBody, text};
use crate::context::Syncer;
use vnest_api::host_copies;

const STREAM_PROTOCOL: HeaderName = HeaderName::from_static("x-stream-protocol-version");
/// Headers of an upgrade request the host apiserver needs.
const UPGRADE_REQUEST_HEADERS: [HeaderName; 6] = [
    CONNECTION,
    UPGRADE,
    STREAM_PROTOCOL,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    SEC_WEBSOCKET_PROTOCOL,
];
/// Headers of the host's `101 Switching Protocols` the tenant needs.
const UPGRADE_RESPONSE_HEADERS: [HeaderName; 5] = [
    CONNECTION,
    UPGRADE,
    STREAM_PROTOCOL,
    SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_PROTOCOL,
];

/// Answers `call` through the host apiserver.
pub async fn call(
    syncer: &Syncer,
    call: KubeletCall,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let namespace = &syncer.settings.host_namespace;
    let host_pod = host_copies::host_name(&call.namespace, &call.pod);
    let pods: Api<Pod> = Api::namespaced(syncer.host.clone(), namespace);
    match pods.get_opt(&host_pod).await {
        Ok(Some(pod))
            if host_copies::origin(pod.metadata.annotations.as_ref())
                == Some((call.namespace.clone(), call.pod.clone())) => {}
        Ok(_) => {
            return text(
                StatusCode::NOT_FOUND,
                format!(
                    "pod {}/{} does not run on the host (yet)",
                    call.namespace, call.pod
                ),
            );
        }
        Err(error) => return host_unavailable(&error),
    }
    let path = route::host_path(&call, request.uri().query(), namespace);
    if call.kind.upgrades() {
        stream(syncer, &call, request, path).await
    } else {
        logs(syncer, &call, &host_pod, path).await
    }
}

fn host_unavailable(error: &kube::Error) -> Response<ProxyBody> {
    tracing::warn!(%error, "kubelet proxy: the host apiserver failed");
    text(
        StatusCode::BAD_GATEWAY,
        "the host cluster did not answer; try again".to_owned(),
    )
}

async fn logs(
    syncer: &Syncer,
    call: &KubeletCall,
    host_pod: &str,
    path: String,
) -> Response<ProxyBody> {
    let request = match Request::get(path).body(kube::client::Body::empty()) {
        Ok(request) => request,
        Err(error) => return text(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let response = match syncer.host.send(request).await {
        Ok(response) => response,
        Err(error) => return host_unavailable(&error),
    };
    let status = response.status();
    if !status.is_success() {
        return failure(call, host_pod, response).await;
    }
    let mut answer = Response::new(
        response
            .into_body()
            .map_err(std::io::Error::other)
            .boxed_unsync(),
    );
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    answer
}

/// The host's refusal as the tenant should read it: its message, with the
/// host pod's name replaced by the tenant's.
async fn failure(
    call: &KubeletCall,
    host_pod: &str,
    response: Response<kube::client::Body>,
) -> Response<ProxyBody> {
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return text(StatusCode::BAD_GATEWAY, error.to_string()),
    };
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|status| status.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    text(status, message.replace(host_pod, &call.pod))
}

async fn stream(
    syncer: &Syncer,
    call: &KubeletCall,
    mut request: Request<Incoming>,
    path: String,
) -> Response<ProxyBody> {
    let mut host_request = Request::builder()
        .method(request.method().clone())
        .uri(path);
    for name in UPGRADE_REQUEST_HEADERS {
        for value in request.headers().get_all(&name) {
            host_request = host_request.header(&name, value);
        }
    }
    let host_request = match host_request.body(kube::client::Body::empty()) {
        Ok(host_request) => host_request,
        Err(error) => return text(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let mut host_response = match syncer.host.send(host_request).await {
        Ok(response) => response,
        Err(error) => return host_unavailable(&error),
    };
    if host_response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let host_pod = host_copies::host_name(&call.namespace, &call.pod);
        return failure(call, &host_pod, host_response).await;
    }
    let mut answer = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    answer.headers_mut().clear();
    for name in UPGRADE_RESPONSE_HEADERS {
        for value in host_response.headers().get_all(&name) {
            answer.headers_mut().append(&name, value.clone());
        }
    }
    let tenant_side = hyper::upgrade::on(&mut request);
    let host_side = hyper::upgrade::on(&mut host_response);
    let what = format!("{} {}/{}", call.kind.as_str(), call.namespace, call.pod);
    tokio::spawn(async move {
        let (tenant, host) = match tokio::try_join!(tenant_side, host_side) {
            Ok(sides) => sides,
            Err(error) => {
                tracing::warn!(%error, stream = what, "kubelet proxy: upgrade failed");
                return;
            }
        };
        let (mut tenant, mut host) = (TokioIo::new(tenant), TokioIo::new(host));
        match tokio::io::copy_bidirectional(&mut tenant, &mut host).await {
            Ok((up, down)) => {
                tracing::debug!(stream = what, up, down, "kubelet proxy: stream ended")
            }
            Err(error) => tracing::debug!(%error, stream = what, "kubelet proxy: stream broke"),
        }
    });
    answer
}
