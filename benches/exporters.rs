//! `cargo bench --bench exporters`: what publishing costs at 1000 pods, side by side in one run:
//! rendering `/metrics` (text and OpenMetrics) from a snapshot, and encoding the OTLP request
//! (one ResourceMetrics per pod). No root needed: the snapshot is synthetic (1000 pods, one
//! veth each, identity and attributes like the k8s_attributes resolver adds).
//! `NETSHIM_BENCH_PODS` (default 1000) sets the size. Run as a test it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use netshim::exporters::prometheus::{Config, Format, PrometheusExporter};
use netshim::model::{
    Container, Counters, IfAddress, Interface, Link, NetnsRef, Peer, PodIdentity, PodNetwork,
    Sandbox, Snapshot, TransportCounters,
};

const ROUNDS: usize = 50;

pub fn snapshot(pods: usize) -> Snapshot {
    let pods = (0..pods)
        .map(|i| {
            let mut attributes = BTreeMap::new();
            attributes.insert("k8s.deployment.name".to_string(), format!("app-{}", i % 50));
            attributes.insert("k8s.node.name".to_string(), "node-a".to_string());
            PodNetwork {
                sandbox: Sandbox {
                    netns: Some(NetnsRef {
                        path: std::path::PathBuf::from(format!("/var/run/netns/cni-{i:08x}"))
                            .into(),
                        inode: 4026532000 + i as u64,
                        dev: 4,
                    }),
                    pod: Some(PodIdentity {
                        name: Some(format!("app-{}-7d4b9c6f5-{i:05}", i % 50)),
                        namespace: Some(format!("team-{}", i % 20)),
                        uid: Some(format!("00000000-0000-4000-8000-{i:012}")),
                        attributes,
                    }),
                    sandbox_id: Some(format!("{i:064x}")),
                    containers: vec![Container {
                        id: format!("{:064x}", i + 1),
                        name: "main".into(),
                        image: "registry.example/app:1.2.3".into(),
                    }],
                    ..Sandbox::default()
                },
                interfaces: vec![Interface::new(
                    Link {
                        name: "eth0".into(),
                        ifindex: 2,
                        kind: "veth".into(),
                        mac: Some("aa:bb:cc:dd:ee:ff".into()),
                        addresses: [IfAddress {
                            ip: format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)
                                .parse()
                                .unwrap(),
                            prefix_len: 24,
                        }]
                        .into(),
                        peer: Some(Peer {
                            name: format!("lxc{i:012x}").into(),
                            ifindex: 10 + i as u32,
                            kind: "veth".into(),
                        }),
                    },
                    Counters {
                        rx_bytes: 1_234_567_890 + i as u64,
                        tx_bytes: 987_654_321 + i as u64,
                        rx_packets: 1_234_567,
                        tx_packets: 987_654,
                        rx_errors: 0,
                        tx_errors: 1,
                        rx_dropped: 2,
                        tx_dropped: 0,
                    },
                )],
                transport: Some(std::sync::Arc::new(TransportCounters {
                    tcp_active_opens: 12_345 + i as u64,
                    tcp_segments_received: 9_876_543,
                    tcp_segments_sent: 8_765_432,
                    tcp_retransmitted_segments: 321,
                    tcp_established_connections: 17,
                    udp_datagrams_received: 45_678,
                    udp_datagrams_sent: 45_600,
                    ..TransportCounters::default()
                })),
            }
        })
        .collect();
    Snapshot {
        pipeline: "metrics".into(),
        node: "node-a".into(),
        taken_at: SystemTime::now(),
        pods,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut size = 0;
    let times = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            size = std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    (median(times), size)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("NETSHIM_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let snap = Arc::new(snapshot(n));
    let prom = PrometheusExporter::new(Config::default(), Default::default());
    prom.store(Arc::clone(&snap));

    let (text, text_size) = time(|| prom.render(Format::Text).len());
    let (om, om_size) = time(|| prom.render(Format::OpenMetrics).len());
    println!("publishing {n} pods (1 interface each), median of {ROUNDS}:");
    println!(
        "  /metrics text format      {:>8.2} ms  ({} KiB, {} series)",
        text.as_secs_f64() * 1e3,
        text_size / 1024,
        prom.render(Format::Text)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
    );
    println!(
        "  /metrics OpenMetrics      {:>8.2} ms  ({} KiB)",
        om.as_secs_f64() * 1e3,
        om_size / 1024
    );
    otlp_encode(&snap);
    cardinality(&snap);
}

/// What one pod costs on the wire, with its TCP/UDP counters and without (`filter`'s
/// `drop_transport`): series and bytes per scrape (plain and gzip), OTLP bytes per export (plain
/// and gzip). The README's cardinality table is computed from these lines.
fn cardinality(snap: &Snapshot) {
    use netshim::exporters::otlp::convert::{SeriesStarts, to_request};
    use prost::Message;
    let gzip = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap().len()
    };
    let n = snap.pods.len() as f64;
    let mut without = snap.clone();
    for pod in &mut without.pods {
        pod.transport = None;
    }
    println!("per pod (1 interface), averaged over {n} pods:");
    for (what, snap) in [("with TCP/UDP counters", snap), ("without", &without)] {
        let prom = PrometheusExporter::new(Config::default(), Default::default());
        prom.store(Arc::new(snap.clone()));
        let text = prom.render(Format::Text);
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("pod=\""))
            .count() as f64;
        let request = to_request(snap, None, &mut SeriesStarts::default()).0;
        let otlp = request.encode_to_vec();
        println!(
            "  {what:<22} {:.1} series, {:.0} B/scrape ({:.0} B gzip), OTLP {:.0} B/export ({:.0} B gzip)",
            series / n,
            text.len() as f64 / n,
            gzip(text.as_bytes()) as f64 / n,
            otlp.len() as f64 / n,
            gzip(&otlp) as f64 / n,
        );
    }
}

/// Building the OTLP request (one ResourceMetrics per pod) and encoding it to protobuf, as the
/// otlp exporters do for each snapshot (gzip, when on, is applied by the transport after).
fn otlp_encode(snap: &Snapshot) {
    use netshim::exporters::otlp::convert::{SeriesStarts, to_request};
    use prost::Message;
    let mut starts = SeriesStarts::default();
    let (build, points) = time(|| to_request(snap, None, &mut starts).1);
    let (request, _) = to_request(snap, None, &mut starts);
    let (encode, size) = time(|| request.encode_to_vec().len());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &request.encode_to_vec()).unwrap();
    let gz_size = gz.finish().unwrap().len();
    println!(
        "  OTLP request build        {:>8.2} ms  ({points} data points, {} resources)",
        build.as_secs_f64() * 1e3,
        request.resource_metrics.len()
    );
    println!(
        "  OTLP protobuf encode      {:>8.2} ms  ({} KiB; {} KiB gzipped)",
        encode.as_secs_f64() * 1e3,
        size / 1024,
        gz_size / 1024
    );
}
