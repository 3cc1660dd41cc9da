//! The Prometheus exporter's endpoint as hostile and as TLS clients meet it: the real exporter
//! on loopback, raw TCP clients for what no well-behaved client sends, `curl` (a real TLS
//! client, OpenSSL's) for HTTPS, certificates made here with rcgen and rotated on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netshim::exporters::prometheus::{AuthSettings, Config, ServerTlsSettings};

/// The exporter served on a runtime of its own, so the test's blocking clients run beside it.
struct Served {
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

fn serve(config: Config) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = support::exporter::start_prometheus(&runtime, config);
    Served {
        _runtime: runtime,
        addr,
    }
}

/// Sends `request` raw and returns what came back until the server closed or 5 s passed.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough: every case here gets one and is then closed or idle.
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

fn scrape_ok(addr: SocketAddr) {
    let r = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), "200", "scrape: {r}");
}

#[test]
fn bad_requests_get_a_clear_status_and_the_endpoint_keeps_serving() {
    let served = serve(Config::default());
    let a = served.addr;
    let post = raw(
        a,
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&post), "405", "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get,head"),
        "{post}"
    );
    let head = raw(a, b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status(&head), "200", "{head}");
    let unknown = raw(a, b"GET /debug/pprof HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status(&unknown), "404", "{unknown}");
    let garbage = raw(a, b"\x16\x03\x01\x02\x00garbage\xff\xfe\r\n\r\n");
    assert_eq!(status(&garbage), "400", "{garbage}");
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(status(&raw(a, big.as_bytes())), "431");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{many}\r\n");
    assert_eq!(status(&raw(a, many.as_bytes())), "431");
    scrape_ok(a);
}

#[test]
fn a_client_sending_a_byte_a_second_is_cut_off_within_the_header_timeout() {
    let served = serve(Config {
        read_header_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let mut s = TcpStream::connect(served.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in request {
        if s.write_all(&[*byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {
                // 0: closed; anything else is the server's 408 before closing.
                closed_after = Some(started.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let closed_after = closed_after.expect("the slow client was never cut off");
    assert!(
        closed_after < Duration::from_secs(3),
        "cut off after {closed_after:?}, with a 1 s header timeout"
    );
    scrape_ok(served.addr);
}

#[test]
fn a_thousand_idle_connections_do_not_stop_a_scrape() {
    netshim::sys::limits::raise_fd_limit().expect("raise the open file limit");
    let served = serve(Config::default());
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(served.addr).expect("connect idle"))
        .collect();
    let started = Instant::now();
    scrape_ok(served.addr);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "scrape with 1000 idle connections took {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn connections_beyond_the_limit_are_closed_and_the_limit_frees_as_they_end() {
    let served = serve(Config {
        max_connections: 4,
        ..Config::default()
    });
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(served.addr).expect("connect"))
        .collect();
    // Accepted, then closed at once: the read sees the end, not a timeout.
    let over = raw(served.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(over, "", "a connection over the limit was served: {over}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = raw(
            served.addr,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        if status(&r) == "200" {
            break;
        }
        assert!(Instant::now() < deadline, "the limit never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_self_signed_certificate_is_made_when_none_is_given_and_old_tls_is_refused() {
    let served = serve(Config {
        tls: Some(ServerTlsSettings::default()),
        ..Config::default()
    });
    let url = format!("https://localhost:{}/metrics", served.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", served.addr.port());
    let (ok, body) = curl(&["-k", "--resolve", &resolve, &url]);
    assert!(ok && body.contains("netshim_build_info"), "{body}");
    // Not trusted without -k: it is self-signed.
    let (ok, err) = curl(&["--resolve", &resolve, &url]);
    assert!(!ok, "a self-signed certificate was trusted: {err}");
    // TLS 1.1 and plain HTTP are refused.
    let (ok, err) = curl(&["-k", "--tls-max", "1.1", "--resolve", &resolve, &url]);
    assert!(!ok, "TLS 1.1 was accepted: {err}");
    let plain = raw(served.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        !plain.starts_with("HTTP/1.1 200"),
        "plain HTTP served: {plain}"
    );
}

/// A CA and a serving certificate for `localhost` it signed, as PEM files under `dir`, named
/// with `tag`.
fn issue(dir: &Path, tag: &str, client: bool) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("netshim test CA {tag}"));
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    if client {
        leaf.extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    }
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let path = |name: &str| dir.join(format!("{tag}-{name}.pem")).display().to_string();
    std::fs::write(path("ca"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert"), leaf_cert.pem()).unwrap();
    std::fs::write(path("key"), leaf_key.serialize_pem()).unwrap();
    (path("ca"), path("cert"), path("key"))
}

#[test]
fn certificate_files_are_read_again_when_rotated() {
    let dir = tempfile_dir("rotate");
    let (ca1, cert1, key1) = issue(&dir, "one", false);
    let (ca2, cert2, key2) = issue(&dir, "two", false);
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    let served = serve(Config {
        tls: Some(ServerTlsSettings {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            reload_interval: Duration::from_millis(200),
            ..ServerTlsSettings::default()
        }),
        ..Config::default()
    });
    let url = format!("https://localhost:{}/metrics", served.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", served.addr.port());
    let with_ca = |ca: &str| curl(&["--cacert", ca, "--resolve", &resolve, &url]);
    assert!(with_ca(&ca1).0, "{}", with_ca(&ca1).1);
    assert!(!with_ca(&ca2).0);
    // Rotated as a Secret volume would be: new files in place (key first, then the chain).
    std::fs::copy(&key2, &key).unwrap();
    std::fs::copy(&cert2, &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !with_ca(&ca2).0 {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!with_ca(&ca1).0, "the old certificate is still served");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let dir = tempfile_dir("mtls");
    let (server_ca, server_cert, server_key) = issue(&dir, "server", false);
    let (client_ca, client_cert, client_key) = issue(&dir, "client", true);
    let (_, other_cert, other_key) = issue(&dir, "other", true);
    let served = serve(Config {
        tls: Some(ServerTlsSettings {
            cert_file: Some(server_cert.into()),
            key_file: Some(server_key.into()),
            client_ca_file: Some(client_ca.into()),
            ..ServerTlsSettings::default()
        }),
        auth: Some(AuthSettings::Mtls),
        ..Config::default()
    });
    let url = format!("https://localhost:{}/metrics", served.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", served.addr.port());
    let base = ["--cacert", &server_ca, "--resolve", &resolve];
    let (ok, body) = curl(
        &[
            &base[..],
            &["--cert", &client_cert, "--key", &client_key, &url],
        ]
        .concat(),
    );
    assert!(ok && body.contains("netshim_build_info"), "{body}");
    let (ok, _) = curl(&[&base[..], &[url.as_str()]].concat());
    assert!(!ok, "served without a client certificate");
    let (ok, _) = curl(
        &[
            &base[..],
            &["--cert", &other_cert, "--key", &other_key, &url],
        ]
        .concat(),
    );
    assert!(!ok, "served a client certificate another CA signed");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netshim-endpoint-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
