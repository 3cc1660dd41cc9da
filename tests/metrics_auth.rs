//! Who may read `/metrics`: the Prometheus exporter with `auth` as the install sets it
//! (`kubernetes`, over TLS) and as people reuse Prometheus web-configs (`basic`), met by `curl`
//! and by a real Prometheus (Debian's) scraping with a bearer token, with basic auth, and
//! without either.
//!
//! The one fake: TokenReview and SubjectAccessReview cannot be served by a real API server
//! here (none can be installed), so they are answered by the fake API server the other tests
//! use (`tests/support/fake_kube.rs`), from the tokens and permissions each test registers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use netshim::exporters::prometheus::{
    AuthSettings, BasicAuth, Config, KubernetesAuth, ServerTlsSettings,
};
use netshim::kube_api::AuthType;
use support::fake_kube::FakeKube;

use support::exporter::start_prometheus as start;

/// The fake API server, knowing the token Prometheus scrapes with (allowed to get /metrics).
fn kube_knowing_prometheus(runtime: &tokio::runtime::Runtime) -> FakeKube {
    let kube = runtime.block_on(FakeKube::start());
    kube.add_token(
        "prom-token",
        "system:serviceaccount:monitoring:prometheus",
        true,
    );
    kube
}

fn kubernetes(kube: &FakeKube) -> Config {
    Config {
        tls: Some(ServerTlsSettings::default()),
        auth: Some(AuthSettings::Kubernetes(KubernetesAuth {
            auth_type: AuthType::None,
            endpoint: Some(kube.url()),
            ..KubernetesAuth::default()
        })),
        ..Config::default()
    }
}

/// `curl -k` of `/metrics` with extra arguments: (HTTP status, headers and body).
fn curl(addr: SocketAddr, extra: &[&str]) -> (u16, String) {
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "5"])
        .args(extra)
        .arg(&url)
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn kubernetes_auth_answers_401_403_503_and_serves_the_allowed_with_reviews_cached() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kube = kube_knowing_prometheus(&runtime);
    kube.add_token(
        "other-token",
        "system:serviceaccount:default:curious",
        false,
    );
    let addr = start(&runtime, kubernetes(&kube));

    let (code, text) = curl(addr, &[]);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("www-authenticate: Bearer"), "{text}");
    assert!(
        !text.contains("netshim_build_info"),
        "data without credentials: {text}"
    );
    let (code, _) = curl(addr, &["-H", "Authorization: Bearer forged"]);
    assert_eq!(code, 401);
    let (code, text) = curl(addr, &["-H", "Authorization: Bearer other-token"]);
    assert_eq!(code, 403, "{text}");
    assert!(!text.contains("netshim_build_info"));
    let (code, text) = curl(addr, &["-H", "Authorization: Bearer prom-token"]);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("netshim_build_info"));

    // Cached: the same tokens again cost no review.
    let reviews = kube.reviews();
    for token in ["prom-token", "other-token", "forged"] {
        curl(addr, &["-H", &format!("Authorization: Bearer {token}")]);
    }
    assert_eq!(kube.reviews(), reviews, "answers were not cached");

    // The API server down: a token not cached gets 503, never the data; cached ones still work.
    kube.set_unavailable(true);
    kube.add_token(
        "new-token",
        "system:serviceaccount:monitoring:prometheus",
        true,
    );
    let (code, text) = curl(addr, &["-H", "Authorization: Bearer new-token"]);
    assert_eq!(code, 503, "{text}");
    assert!(!text.contains("netshim_build_info"));
    assert_eq!(
        curl(addr, &["-H", "Authorization: Bearer prom-token"]).0,
        200
    );
    kube.set_unavailable(false);
    assert_eq!(
        curl(addr, &["-H", "Authorization: Bearer new-token"]).0,
        200
    );
    // /healthz stays open: it says nothing about pods.
    let health = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{}/healthz", addr.port())])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "OK");
}

#[test]
fn a_real_prometheus_scrapes_with_a_bearer_token_and_basic_auth_and_is_refused_without() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kube = kube_knowing_prometheus(&runtime);
    let with_token = start(&runtime, kubernetes(&kube));
    let hash = bcrypt::hash("scrape-pass", 6).unwrap();
    let with_basic = start(
        &runtime,
        Config {
            tls: Some(ServerTlsSettings::default()),
            auth: Some(AuthSettings::Basic(BasicAuth {
                users: [("prometheus".to_string(), hash)].into(),
                ..BasicAuth::default()
            })),
            ..Config::default()
        },
    );

    let dir = std::env::temp_dir().join(format!("netshim-auth-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("token"), "prom-token\n").unwrap();
    let job = |name: &str, addr: SocketAddr, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      insecure_skip_verify: true\n{auth}    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            addr.port()
        )
    };
    let token_file = dir.join("token").display().to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}{}{}",
        job(
            "token",
            with_token,
            &format!("    authorization:\n      credentials_file: {token_file}\n")
        ),
        job("no_token", with_token, ""),
        job(
            "basic",
            with_basic,
            "    basic_auth:\n      username: prometheus\n      password: scrape-pass\n"
        ),
        job(
            "wrong_basic",
            with_basic,
            "    basic_auth:\n      username: prometheus\n      password: guessed\n"
        ),
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let (mut prometheus, port) = support::run_prometheus(&dir);
    let query = |q: &str| -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "-G", "--data-urlencode"])
            .arg(format!("query={q}"))
            .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = String::new();
    while Instant::now() < deadline {
        answer = query("count by (job) (up)");
        if ["token", "no_token", "basic", "wrong_basic"]
            .iter()
            .all(|j| answer.contains(&format!("\"job\":\"{j}\"")))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for (job, up) in [
        ("token", 1),
        ("no_token", 0),
        ("basic", 1),
        ("wrong_basic", 0),
    ] {
        let a = query(&format!("up{{job=\"{job}\"}}"));
        assert!(
            a.contains(&format!(",\"{up}\"]")),
            "up of {job}: {a} (all: {answer})"
        );
    }
    let built = query("netshim_build_info{job=\"token\"}");
    assert!(built.contains("\"version\""), "{built}");
    let _ = prometheus.child.kill();
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hundred_scrapes_a_second_over_tls_with_auth_hold_with_no_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kube = kube_knowing_prometheus(&runtime);
    let addr = start(&runtime, kubernetes(&kube));
    // 500 scrapes on one kept TLS connection, paced at 100 a second by curl's --rate (which
    // paces serial transfers only), as a Prometheus with many jobs on one target would.
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-sk", "--rate", "100/s"])
        .args(["-H", "Authorization: Bearer prom-token"])
        .args(["-o", "/dev/null", "-w", "%{http_code}\n"])
        .args(std::iter::repeat_n(url.as_str(), 500))
        .output()
        .expect("curl");
    let elapsed = started.elapsed();
    let codes = String::from_utf8_lossy(&out.stdout);
    let ok = codes.lines().filter(|c| *c == "200").count();
    assert_eq!(ok, 500, "scrapes answered 200 (others: {codes})");
    eprintln!("500 authorized TLS scrapes in {elapsed:?}");
    // Paced: 500 at 100 a second take about 5 s (curl waits before each but the first).
    assert!(elapsed >= Duration::from_secs(4), "not paced: {elapsed:?}");
    assert!(
        kube.reviews() <= 8,
        "{} reviews for one token",
        kube.reviews()
    );
}
