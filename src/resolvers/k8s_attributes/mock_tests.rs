//! The API client layer against kube's mock service (`tower-test`): no kube-apiserver can run
//! on the build machine, so these tests play the server and assert on each request the watcher
//! makes — the node's field selector, the watch parameters and resource versions, the relist
//! after a 410 Gone.

use std::collections::HashMap;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::json;
use tower_test::mock;

use super::*;
use crate::health::Health;
use crate::model::{IfAddress, Interface, Link, PodNetwork, Sandbox};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn query(req: &Request<Body>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| serde_urlencoded::from_str(q).expect("query"))
        .unwrap_or_default()
}

fn pod(name: &str, uid: &str, ip: &str, rv: &str) -> serde_json::Value {
    // A Deployment's pod: `<deployment>-<template hash>-<random>`, owned by `<deployment>-<hash>`.
    let replicaset = name.rsplit_once('-').map_or(name, |(rs, _)| rs);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": replicaset, "uid": "rs", "controller": true}]},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).expect("json")))
        .expect("response")
}

/// A watch answer: newline-delimited events, then the end of the stream.
fn events(events: &[serde_json::Value]) -> Response<Body> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).expect("json"));
        body.push(b'\n');
    }
    Response::builder()
        .status(200)
        .body(Body::from(body))
        .expect("response")
}

async fn next(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
    tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10s")
        .expect("a request")
}

fn sandbox_with_ip(ip: &str) -> PodNetwork {
    let mut p = PodNetwork::new(Sandbox::default());
    p.interfaces.push(Interface::new(
        Link {
            name: "eth0".into(),
            ifindex: 2,
            kind: "veth".into(),
            mac: None,
            addresses: [IfAddress {
                ip: ip.parse().expect("ip"),
                prefix_len: 24,
            }]
            .into(),
            peer: None,
        },
        Default::default(),
    ));
    p
}

fn resolver(client: kube::Client) -> K8sAttributesResolver {
    let config = Config {
        auth_type: AuthType::None,
        endpoint: Some("http://unused".into()),
        node_name: Some("node-a".into()),
        wait_for_metadata_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    K8sAttributesResolver::new(config, "node-a".into()).with_client(client)
}

#[tokio::test]
async fn lists_then_watches_this_nodes_pods_and_relists_after_gone() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let r = std::sync::Arc::new(resolver(kube::Client::new(service, "default")));
    let health = Health::default();
    let starting = {
        let r = r.clone();
        let health = health.clone();
        tokio::spawn(async move {
            r.start(StartContext {
                id: "k8s_attributes".into(),
                health,
                one_shot: true,
            })
            .await
        })
    };

    // 1. The initial list: all namespaces, this node only, not a watch.
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().path(), "/api/v1/pods");
    let q = query(&req);
    assert_eq!(
        q.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );
    assert!(!q.contains_key("watch"), "{q:?}");
    assert!(!health.is_ready(), "not ready before the first list");
    send.send_response(json_response(&json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "100"},
        "items": [pod("web-5d8f7c9b4-aaaaa", "ua", "10.0.0.1", "90")]
    })));

    // 2. The watch, from the list's resource version, same selector.
    let (req, send) = next(&mut handle).await;
    let q = query(&req);
    assert_eq!(q.get("watch").map(String::as_str), Some("true"));
    assert_eq!(q.get("resourceVersion").map(String::as_str), Some("100"));
    assert_eq!(
        q.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );
    assert_eq!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true")
    );
    assert!(q.contains_key("timeoutSeconds"));

    // `discover` waited for the list: start is done, and the pod is known.
    tokio::time::timeout(Duration::from_secs(5), starting)
        .await
        .expect("start returns once synced")
        .expect("no panic")
        .expect("started");
    assert_eq!(r.known_pods(), 1);
    // Readiness is reported by a task of its own.
    for _ in 0..100 {
        if health.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(health.is_ready(), "ready after the first list");

    send.send_response(events(&[
        json!({"type": "ADDED", "object": pod("api-6c9d8b7f5-bbbbb", "ub", "10.0.0.2", "101")}),
        json!({"type": "BOOKMARK", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": "102"}}}),
    ]));

    // 3. The stream ended: watch again from the last version seen.
    let (req, send) = next(&mut handle).await;
    let q = query(&req);
    assert_eq!(q.get("watch").map(String::as_str), Some("true"));
    assert_eq!(q.get("resourceVersion").map(String::as_str), Some("102"));
    assert_eq!(r.known_pods(), 2);

    let mut batch = Batch {
        pods: vec![sandbox_with_ip("10.0.0.2"), sandbox_with_ip("10.9.9.9")],
    };
    r.resolve(&mut batch).await.expect("resolve");
    let api = batch.pods[0]
        .sandbox
        .pod
        .as_ref()
        .expect("associated by IP");
    assert_eq!(api.name.as_deref(), Some("api-6c9d8b7f5-bbbbb"));
    assert_eq!(api.uid.as_deref(), Some("ub"));
    assert_eq!(api.attributes["k8s.deployment.name"], "api");
    assert!(batch.pods[1].sandbox.pod.is_none());

    // 4. 410 Gone: the watcher lists again (no resource version to resume from).
    send.send_response(events(&[json!({
        "type": "ERROR",
        "object": {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "message": "too old resource version", "reason": "Expired", "code": 410}
    })]));
    let (req, send) = next(&mut handle).await;
    let q = query(&req);
    assert!(!q.contains_key("watch"), "a fresh list after 410: {q:?}");
    assert_eq!(
        q.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );
    // The relisted state replaces the old one: `web` is gone.
    send.send_response(json_response(&json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "200"},
        "items": [pod("api-6c9d8b7f5-bbbbb", "ub", "10.0.0.2", "150")]
    })));
    let (req, _send) = next(&mut handle).await;
    assert_eq!(
        query(&req).get("resourceVersion").map(String::as_str),
        Some("200")
    );
    assert_eq!(r.known_pods(), 1);
}

#[tokio::test]
async fn an_unreachable_api_leaves_it_not_ready_and_start_goes_on_in_one_shot_mode() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut config = Config {
        auth_type: AuthType::None,
        endpoint: Some("http://unused".into()),
        node_name: Some("node-a".into()),
        wait_for_metadata_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let r = K8sAttributesResolver::new(config.clone(), "node-a".into())
        .with_client(kube::Client::new(service, "default"));
    // The server answers 503 to everything.
    let server = tokio::spawn(async move {
        while let Some((_req, send)) = handle.next_request().await {
            send.send_response(
                Response::builder()
                    .status(503)
                    .body(Body::from(b"{\"kind\":\"Status\",\"code\":503}".to_vec()))
                    .expect("response"),
            );
        }
    });
    let health = Health::default();
    let started = tokio::time::Instant::now();
    r.start(StartContext {
        id: "k8s_attributes".into(),
        health: health.clone(),
        one_shot: true,
    })
    .await
    .expect("one-shot start goes on without metadata");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!health.is_ready());
    let mut batch = Batch {
        pods: vec![sandbox_with_ip("10.0.0.2")],
    };
    r.resolve(&mut batch)
        .await
        .expect("resolve with nothing known");
    assert!(batch.pods[0].sandbox.pod.is_none());
    drop(r);
    server.abort();

    // With wait_for_metadata, the agent does not start.
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    config.wait_for_metadata = true;
    let r = K8sAttributesResolver::new(config, "node-a".into())
        .with_client(kube::Client::new(service, "default"));
    let server = tokio::spawn(async move {
        while let Some((_req, send)) = handle.next_request().await {
            send.send_response(
                Response::builder()
                    .status(503)
                    .body(Body::from(Vec::new()))
                    .expect("response"),
            );
        }
    });
    let err = r
        .start(StartContext {
            id: "k8s_attributes".into(),
            health: Health::default(),
            one_shot: false,
        })
        .await
        .expect_err("not synced in time");
    assert!(err.to_string().contains("not synced within"), "{err}");
    server.abort();
}
