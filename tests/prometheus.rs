//! The `prometheus` exporter and the `health_check` extension as an operator runs them: the
//! real binary, real pod namespaces with known traffic, `promtool check metrics` on the output,
//! and a real Prometheus (Debian's) scraping the agent and answering PromQL. Needs root,
//! `promtool` and `prometheus` (installed by scripts/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::HashSet;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::agent::sample_with;
use support::*;

struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn get(url: &str, headers: &[(&str, &str)]) -> Result<Http, String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(Http {
        status,
        headers,
        body,
    })
}

/// A pod namespace with exact traffic: `count` UDP datagrams of `size` bytes from the host end
/// to the pod (static neighbours, IPv6 off: nothing else crosses the pair).
fn pod_with_traffic(
    ns_name: &str,
    host: &str,
    net: u8,
    count: usize,
    size: usize,
) -> (Netns, HostLink) {
    let ns = Netns::new(ns_name);
    let link = quiet_veth(&ns, host, net);
    let (h_ip, p_ip) = (format!("169.254.{net}.1"), format!("169.254.{net}.2"));
    let sock = std::net::UdpSocket::bind(format!("{h_ip}:0")).unwrap();
    for _ in 0..count {
        // Nobody listens in the pod: the datagrams are still received (and counted) by eth0.
        sock.send_to(&vec![b'x'; size], format!("{p_ip}:9"))
            .unwrap();
    }
    (ns, link)
}

/// The agent, run from its binary, stopped by pid.
fn run_agent(config: &str, dir: &Path) -> Process {
    let path = dir.join("agent.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_netshim"))
        .arg("run")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Process { child }
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let (ns, _link) = pod_with_traffic("nst-prom-a", "lxcnstprom0", 93, 4, 200);
    let dir = std::env::temp_dir().join(format!("nst-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, health_port, prom_port) = (free_port(), free_port(), free_port());
    let config = format!(
        "receivers:\n  netns:\n    collection_interval: 300ms\nresolvers:\n  interfaces:\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{health_port}\nservice:\n  extensions: [health_check]\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n"
    );
    let _agent = run_agent(&config, &dir);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let netns_label = "netns=\"/run/netns/nst-prom-a\"";
    assert!(
        wait_until(Duration::from_secs(10), || get(&url, &[])
            .is_ok_and(|r| r.text().contains(netns_label))),
        "the pod appears on /metrics"
    );

    // Health: ready after the first cycle; liveness; the older shim's /healthz.
    let ready = get(&format!("http://127.0.0.1:{health_port}/"), &[]).unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(ready.text().contains("receivers::netns"));
    assert_eq!(
        get(&format!("http://127.0.0.1:{health_port}/livez"), &[])
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/healthz"), &[])
            .unwrap()
            .status,
        200
    );

    // The text format: values are the kernel's, from the pod's side (the host end transmitted).
    // Read for eth0 by name: a namespace may hold other links (a kernel with tunnel modules
    // gives every new namespace its `tunl0`/`sit0`). The kernel's figure is what the agent must
    // reach; it is waited for (bounded) rather than taken from the first scrape, and a miss
    // shows the whole document and the kernel's own view of both ends.
    let eth0 = [netns_label, "interface=\"eth0\""];
    // Four datagrams of 200 bytes, each with 14 (Ethernet) + 20 (IPv4) + 8 (UDP) on the wire.
    let sent: u64 = 4 * (42 + 200);
    let mut text = String::new();
    let mut last_kernel = 0;
    let agreed = wait_until(Duration::from_secs(10), || {
        let Ok(r) = get(&url, &[]) else { return false };
        text = r.text();
        last_kernel = host_counter("lxcnstprom0", "tx_bytes");
        sample_with(&text, "netshim_pod_network_receive_bytes_total", &eth0)
            .is_some_and(|rx| rx as u64 == last_kernel && last_kernel == sent)
    });
    assert!(
        agreed,
        "pod rx should be the host end's tx ({last_kernel}, expected {sent}) on /metrics:\n{text}\n\
         kernel, pod side: {}\nkernel, host side: {}",
        ns.output(&["-s", "link", "show", "eth0"]),
        ip_output(&["-s", "link", "show", "lxcnstprom0"]),
    );
    let r = get(&url, &[]).unwrap();
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text();
    let rxp = sample_with(&text, "netshim_pod_network_receive_packets_total", &eth0).unwrap();
    assert_eq!(rxp as u64, 4);
    assert_eq!(rxp as u64, host_counter("lxcnstprom0", "tx_packets"));
    let tx = sample_with(&text, "netshim_pod_network_transmit_bytes_total", &eth0).unwrap();
    assert_eq!(tx as u64, host_counter("lxcnstprom0", "rx_bytes"));
    assert!(text.contains("host_interface=\"lxcnstprom0\""));
    assert!(text.contains("netshim_build_info{version="));
    assert!(sample_with(&text, "netshim_cycles_total", &[]).is_some_and(|v| v >= 1.0));

    // promtool lint, and no duplicate series (promtool does not catch those).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut series = HashSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let key = line.rsplit_once(' ').unwrap().0;
        assert!(series.insert(key.to_string()), "duplicate series {key}");
    }

    // OpenMetrics when asked; gzip when asked.
    let om = get(
        &url,
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .unwrap();
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.text().ends_with("# EOF\n"));
    assert!(
        om.text()
            .contains("# TYPE netshim_pod_network_receive_bytes counter")
    );
    let gz = get(&url, &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert!(plain.contains(netns_label));

    // A real Prometheus scrapes the agent and answers PromQL.
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: netshim\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    let mut prom = Process { child: prom };
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=netshim_pod_network_receive_bytes_total%7Bnetns%3D%22%2Frun%2Fnetns%2Fnst-prom-a%22%7D"
    );
    let mut answer = String::new();
    let found = wait_until(Duration::from_secs(30), || {
        answer = get(&query, &[]).map(|r| r.text()).unwrap_or_default();
        answer.contains("\"value\"")
    });
    if !found {
        let _ = prom.child.kill();
        let mut err = String::new();
        let _ = prom.child.stderr.take().unwrap().read_to_string(&mut err);
        panic!(
            "Prometheus never had the series; last answer {answer}; log tail {}",
            &err[err.len().saturating_sub(2000)..]
        );
    }
    assert!(answer.contains(&format!("\"{sent}\"")), "{answer}");
    assert!(answer.contains("\"job\":\"netshim\""), "{answer}");

    // The pod goes: its series go within a cycle.
    drop(ns);
    assert!(
        wait_until(Duration::from_secs(5), || get(&url, &[])
            .is_ok_and(|r| !r.text().contains(netns_label))),
        "series of a deleted pod removed"
    );
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_agent_stops_cleanly_on_sigterm_and_reports_not_ready_before_its_first_cycle() {
    let dir = std::env::temp_dir().join(format!("nst-prom-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, health_port) = (free_port(), free_port());
    // The runtime socket does not exist: the cri receiver never succeeds.
    let config = format!(
        "receivers:\n  cri:\n    endpoint: unix:///nonexistent/nst.sock\n    timeout: 200ms\n    collection_interval: 500ms\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{health_port}\n    path: /ready\nservice:\n  extensions: [health_check]\n  pipelines:\n    metrics:\n      receivers: [cri]\n      exporters: [prometheus]\n"
    );
    let mut agent = run_agent(&config, &dir);
    let ready_url = format!("http://127.0.0.1:{health_port}/ready");
    assert!(wait_until(Duration::from_secs(10), || get(&ready_url, &[]).is_ok()));
    let r = get(&ready_url, &[]).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("nonexistent"),
        "the reason is shown: {}",
        r.text()
    );
    // The failures are counted on /metrics.
    assert!(wait_until(Duration::from_secs(5), || {
        get(&format!("http://127.0.0.1:{port}/metrics"), &[]).is_ok_and(|r| {
            r.text()
                .contains("netshim_errors_total{stage=\"receiver\",component=\"cri\"}")
        })
    }));

    let _ = Command::new("kill")
        .args(["-TERM", &agent.pid().to_string()])
        .status();
    assert!(wait_until(Duration::from_secs(12), || agent
        .child
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(agent.child.wait().unwrap().success());
    let mut log = String::new();
    let _ = BufReader::new(agent.child.stderr.take().unwrap()).read_to_string(&mut log);
    assert!(log.contains("SIGTERM"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
