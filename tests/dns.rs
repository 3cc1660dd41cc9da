//! netshim's own host-name resolution (`netshim::dns`) against a real DNS server: Debian's
//! dnsmasq on a loopback address of its own (127.53.X.Y, port 53, as a cluster DNS is reached),
//! with a resolv.conf shaped as the kubelet writes it for `dnsPolicy: ClusterFirstWithHostNet`
//! and a kubelet-like hosts file. dnsmasq logs every query it gets, so the tests also see which
//! names were asked (the search list in order; none for IPs and hosts-file names). Then the
//! agent binary, with those two files bind-mounted over /etc/hosts and /etc/resolv.conf in a
//! mount namespace of its own (as a container gets them), exports OTLP to host names.
//! dnsmasq missing: SKIPPED, unless `NETSHIM_REQUIRE_DNS=1` makes that a failure. Traffic goes
//! only to loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netshim::dns::DnsResolver;
use support::otlp_sink::{Sink, venv};
use support::*;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

fn dnsmasq_available() -> bool {
    if Path::new(DNSMASQ).exists() {
        return true;
    }
    assert!(
        std::env::var("NETSHIM_REQUIRE_DNS").as_deref() != Ok("1"),
        "NETSHIM_REQUIRE_DNS=1 but {DNSMASQ} is missing (apt-get install dnsmasq-base)"
    );
    eprintln!("SKIPPED: {DNSMASQ} missing (apt-get install dnsmasq-base)");
    false
}

/// dnsmasq answering for `cluster.local`, `svc` and `test` from `records` only (NXDOMAIN for
/// the rest of them, REFUSED elsewhere: it has no upstream), on `addr`:53. Killed by pid.
struct Dns {
    _process: Process,
    log: PathBuf,
}

impl Dns {
    fn start(dir: &TempDir, addr: &str, records: &[(&str, &str)]) -> Dns {
        let log = dir.path("dnsmasq.log");
        let mut cmd = Command::new(DNSMASQ);
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--group=root",
            "--pid-file=",
            "--log-queries",
            "--log-facility=-",
            "--cache-size=0",
            "--local=/cluster.local/",
            "--local=/svc/",
            "--local=/test/",
        ])
        .arg(format!("--listen-address={addr}"));
        for (name, ip) in records {
            cmd.arg(format!("--host-record={name},{ip}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("dnsmasq log"))
            .spawn()
            .expect("start dnsmasq");
        let process = Process { child };
        let ready = wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("started, version"))
                && std::net::TcpStream::connect((addr, 53)).is_ok()
        });
        assert!(
            ready,
            "dnsmasq did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Dns {
            _process: process,
            log,
        }
    }

    /// The names asked (`query[A] NAME from …`, `query[AAAA] …` lines), each once, in the
    /// order first asked.
    fn queries(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for line in std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
        {
            let Some(at) = line.find("query[") else {
                continue;
            };
            if let Some(name) = line[at..].split_whitespace().nth(1)
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_string());
            }
        }
        names
    }
}

/// A loopback address for this test binary's DNS server: 127.53.(pid % 200 + 1).`n`.
fn dns_addr(n: u8) -> String {
    format!("127.53.{}.{n}", std::process::id() % 200 + 1)
}

/// What the kubelet writes for `dnsPolicy: ClusterFirstWithHostNet` in namespace `monitoring`
/// (cluster domain `cluster.local`; the node's own search domains would follow, there are none).
fn resolv_conf(dir: &TempDir, nameserver: &str) -> PathBuf {
    let path = dir.path("resolv.conf");
    std::fs::write(
        &path,
        format!(
            "search monitoring.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver {nameserver}\noptions ndots:5\n"
        ),
    )
    .unwrap();
    path
}

/// A hostNetwork pod's hosts file: the node's (the kubelet copies it), here with the names the
/// tests need.
fn hosts_file(dir: &TempDir) -> PathBuf {
    let path = dir.path("hosts");
    std::fs::write(
        &path,
        "# Kubernetes-managed hosts file (host network).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         127.0.1.1\tnst-dns-node.example nst-dns-node\n\
         127.0.0.1\tsink.nst-dns.test\n",
    )
    .unwrap();
    path
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn names_resolve_through_the_search_list_the_hosts_file_and_not_for_ips() {
    if !dnsmasq_available() {
        return;
    }
    let dir = TempDir::new("nst-dns-resolve");
    let addr = dns_addr(1);
    let dns = Dns::start(
        &dir,
        &addr,
        &[("otel-collector.monitoring.svc.cluster.local", "127.0.0.7")],
    );
    let resolver = DnsResolver::from_files(&resolv_conf(&dir, &addr), &hosts_file(&dir));

    // The usual OTLP endpoint: two dots < ndots 5, so the search list first, in order.
    let got = resolver
        .lookup("otel-collector.monitoring.svc")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, vec![ip("127.0.0.7")]);
    assert_eq!(
        dns.queries(),
        [
            "otel-collector.monitoring.svc.monitoring.svc.cluster.local",
            "otel-collector.monitoring.svc.svc.cluster.local",
            "otel-collector.monitoring.svc.cluster.local",
        ],
        "the search list, in order, up to the first name that exists"
    );
    // Hosts-file names and IP literals: answered without asking the server.
    let before = dns.queries().len();
    assert_eq!(
        resolver.lookup("nst-dns-node").await.unwrap(),
        vec![ip("127.0.1.1")]
    );
    assert_eq!(
        resolver.lookup("Sink.NST-DNS.test").await.unwrap(),
        vec![ip("127.0.0.1")]
    );
    assert_eq!(
        resolver.lookup("localhost").await.unwrap(),
        vec![ip("127.0.0.1"), ip("::1")]
    );
    assert_eq!(
        resolver.lookup("192.0.2.10").await.unwrap(),
        vec![ip("192.0.2.10")]
    );
    assert_eq!(resolver.lookup("[::1]").await.unwrap(), vec![ip("::1")]);
    assert_eq!(
        dns.queries()[before..],
        [] as [String; 0],
        "no query for hosts-file names or IPs"
    );

    // The short name, through the search list (`otel-collector.monitoring` is tried first).
    assert_eq!(
        resolver.lookup("otel-collector.monitoring").await.unwrap(),
        vec![ip("127.0.0.7")]
    );

    // A name nobody knows: a clear error naming it, after the whole search list and the name.
    let err = resolver
        .lookup("nope.monitoring.svc")
        .await
        .expect_err("nope.monitoring.svc must not resolve")
        .to_string();
    assert_eq!(
        err,
        format!(
            "resolving nope.monitoring.svc: no such host (DNS, with {}'s search list)",
            dir.path("resolv.conf").display()
        )
    );
    eprintln!("unknown name: {err}");
    assert_eq!(
        dns.queries()[before..],
        [
            "otel-collector.monitoring.monitoring.svc.cluster.local",
            "nope.monitoring.svc.monitoring.svc.cluster.local",
            "nope.monitoring.svc.svc.cluster.local",
            "nope.monitoring.svc.cluster.local",
            "nope.monitoring.svc",
        ],
        "the short name's first try, then the whole search list and the name itself"
    );

    // Connecting by name: a listener on 127.0.0.1 reached as sink.nst-dns.test.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp = resolver
        .connect("sink.nst-dns.test", port)
        .await
        .expect("connect by name");
    assert_eq!(tcp.peer_addr().unwrap().port(), port);
    let err = resolver
        .connect("127.0.0.1", free_port())
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(err.starts_with("connecting to 127.0.0.1:"), "{err}");
}

/// The agent binary in a mount namespace where the test's hosts file and resolv.conf are
/// /etc/hosts and /etc/resolv.conf (as the kubelet mounts them into its container): pod metrics
/// over OTLP/gRPC to `otel-collector.monitoring.svc` (DNS, through the search list) and over
/// OTLP/HTTP to `sink.nst-dns.test` (hosts file), and its own metrics (`service.telemetry`,
/// opentelemetry-otlp's exporter on netshim's channel) to the DNS name too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_exports_to_host_names_with_the_files_the_kubelet_mounts() {
    if !dnsmasq_available() {
        return;
    }
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-dns-agent");
    let addr = dns_addr(2);
    let dns = Dns::start(
        &dir,
        &addr,
        &[("otel-collector.monitoring.svc.cluster.local", "127.0.0.1")],
    );
    let resolv = resolv_conf(&dir, &addr);
    let hosts = hosts_file(&dir);
    let sink = Sink::start(
        &venv,
        &dir,
        "sink",
        &["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    );
    let ns = Netns::new("nst-dns-agent");
    let _link = quiet_veth(&ns, "lxcnstdnsag0", 97);
    let config = dir.path("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"receivers:
  netns:
    collection_interval: 300ms
resolvers:
  interfaces:
exporters:
  otlp_grpc:
    endpoint: otel-collector.monitoring.svc:{grpc}
    tls:
      insecure: true
  otlp_http:
    endpoint: http://sink.nst-dns.test:{http}
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [otlp_grpc, otlp_http]
  telemetry:
    metrics:
      endpoint: http://otel-collector.monitoring.svc:{grpc}
      interval: 500ms
"#,
            grpc = sink.grpc_port,
            http = sink.http_port
        ),
    )
    .unwrap();
    let stderr = dir.path("agent.stderr");
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(
            r#"mount --bind "$1" /etc/hosts; mount --bind "$2" /etc/resolv.conf; shift 2; exec "$@""#,
        )
        .arg("sh")
        .arg(&hosts)
        .arg(&resolv)
        .arg(env!("CARGO_BIN_EXE_netshim"))
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let _agent = Process { child };
    let pod = "/run/netns/nst-dns-agent";
    let arrived = wait_until(Duration::from_secs(15), || {
        let records = sink.records();
        let pod_over = |transport: &str| {
            records
                .iter()
                .any(|r| r["transport"] == transport && r["resource"]["netshim.netns.path"] == pod)
        };
        pod_over("grpc")
            && pod_over("http")
            && records.iter().any(|r| {
                r["metric"] == "netshim.cycles" && r["resource"]["service.name"] == "netshim"
            })
    });
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    let records = sink.records();
    assert!(
        arrived,
        "pod metrics over gRPC and HTTP and the agent's own metrics, by host name; sink has \
         {} records: grpc {}, http {}, own {}\nagent log:\n{log}\nDNS queries: {:?}",
        records.len(),
        sink.has("grpc", "nst-dns-agent"),
        sink.has("http", "nst-dns-agent"),
        records.iter().any(|r| r["metric"] == "netshim.cycles"),
        dns.queries()
    );
    assert!(
        dns.queries()
            .contains(&"otel-collector.monitoring.svc.cluster.local".to_string()),
        "{:?}",
        dns.queries()
    );
    assert!(
        !dns.queries().iter().any(|q| q.ends_with("nst-dns.test")),
        "the hosts-file name went to DNS: {:?}",
        dns.queries()
    );
    assert!(!log.contains("panicked"), "{log}");
}
