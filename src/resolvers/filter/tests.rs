use serde_json::json;

use super::*;
use crate::component::{BuildContext, BuildSite, Kind};
use crate::config::{ComponentId, parse_component};
use crate::model::{Counters, Interface, Link, PodIdentity, Sandbox, TransportCounters};

fn config(v: serde_json::Value) -> Result<Config, String> {
    parse_component::<Config>("resolvers::filter", v).map_err(|e| e.to_string())
}

fn filter(v: serde_json::Value) -> FilterResolver {
    let id: ComponentId = "filter".parse().unwrap();
    let context = BuildContext::new("n1");
    let site = BuildSite {
        kind: Kind::Resolver,
        id: &id,
        context: &context,
    };
    let resolver = config(v).unwrap();
    FilterResolver {
        include: resolver.include.as_ref().map(|b| Matcher::new(b).unwrap()),
        exclude: resolver.exclude.as_ref().map(|b| Matcher::new(b).unwrap()),
        drop_transport: resolver
            .drop_transport
            .as_ref()
            .map(|b| Matcher::new(b).unwrap()),
        drop_interfaces: {
            // The factory's own path builds too.
            assert!(resolver.clone().build(&site).is_ok());
            resolver
                .drop_interfaces
                .as_ref()
                .map(|b| Matcher::new(b).unwrap())
        },
    }
}

fn iface(name: &str, kind: &str) -> Interface {
    Interface::new(
        Link {
            name: name.into(),
            ifindex: 2,
            kind: kind.into(),
            mac: None,
            addresses: [].into(),
            peer: None,
        },
        Counters::default(),
    )
}

fn pod(namespace: &str, name: &str, app: &str, ifaces: &[(&str, &str)]) -> PodNetwork {
    let mut sandbox = Sandbox {
        pod: Some(PodIdentity {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..PodIdentity::default()
        }),
        ..Sandbox::default()
    };
    sandbox.labels.insert("app".into(), app.into());
    PodNetwork {
        sandbox,
        interfaces: ifaces.iter().map(|(n, k)| iface(n, k)).collect(),
        transport: Some(std::sync::Arc::new(TransportCounters::default())),
    }
}

fn batch() -> Batch {
    Batch {
        pods: vec![
            pod(
                "shop",
                "web-1",
                "web",
                &[("eth0", "veth"), ("net1", "macvlan")],
            ),
            pod("shop", "db-0", "db", &[("eth0", "veth")]),
            pod("kube-system", "coredns-1", "dns", &[("eth0", "veth")]),
        ],
    }
}

fn names(b: &Batch) -> Vec<String> {
    b.pods
        .iter()
        .map(|p| {
            let ifaces: Vec<&str> = p.interfaces.iter().map(|i| &*i.name).collect();
            let t = if p.transport.is_some() { "+t" } else { "" };
            format!(
                "{}[{}]{t}",
                p.sandbox.pod.as_ref().unwrap().name.as_deref().unwrap(),
                ifaces.join(",")
            )
        })
        .collect()
}

fn run(v: serde_json::Value) -> Vec<String> {
    let mut b = batch();
    filter(v).apply(&mut b);
    names(&b)
}

#[test]
fn exclude_by_namespace_drops_whole_pods() {
    assert_eq!(
        run(json!({"exclude": {"match_type": "strict", "namespaces": ["kube-system"]}})),
        ["web-1[eth0,net1]+t", "db-0[eth0]+t"]
    );
}

#[test]
fn include_by_regexp_keeps_matching_pods_and_interfaces() {
    assert_eq!(
        run(
            json!({"include": {"match_type": "regexp", "pod_names": ["^web-"], "interface_kinds": ["veth"]}})
        ),
        ["web-1[eth0]+t"]
    );
    // Regexp matches anywhere in the value, as the Collector's filter does.
    assert_eq!(
        run(json!({"include": {"match_type": "regexp", "namespaces": ["sys"]}})),
        ["coredns-1[eth0]+t"]
    );
}

#[test]
fn exclude_with_interface_properties_drops_interfaces_not_pods() {
    assert_eq!(
        run(
            json!({"exclude": {"match_type": "strict", "pod_labels": [{"key": "app", "value": "web"}], "interface_names": ["net1"]}})
        ),
        ["web-1[eth0]+t", "db-0[eth0]+t", "coredns-1[eth0]+t"]
    );
}

#[test]
fn drop_blocks_remove_one_counter_set_of_the_chosen_pods() {
    assert_eq!(
        run(json!({
            "drop_transport": {"match_type": "strict", "namespaces": ["kube-system"]},
            "drop_interfaces": {"match_type": "regexp", "pod_labels": [{"key": "app", "value": "^d"}]},
        })),
        ["web-1[eth0,net1]+t", "db-0[]+t", "coredns-1[]"]
    );
}

#[test]
fn labels_come_from_the_runtime_else_from_k8s_attributes() {
    let mut b = batch();
    let p = &mut b.pods[0];
    p.sandbox.labels.clear();
    let id = p.sandbox.pod.as_mut().unwrap();
    id.attributes
        .insert("k8s.pod.labels.tier".into(), "front".into());
    filter(json!({"include": {"match_type": "strict", "pod_labels": [{"key": "tier", "value": "front"}]}}))
        .apply(&mut b);
    assert_eq!(names(&b), ["web-1[eth0,net1]+t"]);
}

#[test]
fn a_pod_without_a_name_matches_no_name_list() {
    let mut b = batch();
    b.pods[0].sandbox.pod = None;
    filter(json!({"exclude": {"match_type": "regexp", "pod_names": [".*"]}})).apply(&mut b);
    assert_eq!(b.pods.len(), 1, "only the unnamed pod stays");
    assert!(b.pods[0].sandbox.pod.is_none());
}

#[test]
fn bad_settings_are_reported_with_their_path() {
    let e = config(json!({})).unwrap_err();
    assert!(e.contains("nothing to filter"), "{e}");
    let e = config(json!({"exclude": {"namespaces": ["a"]}})).unwrap_err();
    assert!(e.contains("match_type"), "{e}");
    let e = config(json!({"include": {"match_type": "glob", "namespaces": ["a"]}})).unwrap_err();
    assert!(e.contains("glob"), "{e}");
    let e = config(json!({"include": {"match_type": "regexp", "namespaces": ["ok", "(unclosed"]}}))
        .unwrap_err();
    assert!(
        e.contains("include.namespaces[1]: not a regular expression"),
        "{e}"
    );
    let e = config(json!({"exclude": {"match_type": "strict"}})).unwrap_err();
    assert!(e.contains("exclude.matches nothing"), "{e}");
    let e =
        config(json!({"drop_transport": {"match_type": "strict", "interface_names": ["eth0"]}}))
            .unwrap_err();
    assert!(e.contains("drop_transport: selects pods"), "{e}");
    let e = config(json!({"include": {"match_type": "strict", "pod_name": ["a"]}})).unwrap_err();
    assert!(e.contains("pod_name"), "{e}");
    assert!(e.contains("resolvers::filter"), "{e}");
}
