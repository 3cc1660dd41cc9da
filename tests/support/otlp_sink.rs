//! The recording OTLP sink (`tests/otlp/otlp_sink.py`, gRPC and HTTP, one JSON line per data
//! point) in the venv `scripts/otlp-test-env.sh` prepares.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{Process, TempDir};

/// The venv with grpcio, opentelemetry-proto and rotel, or `None` (skip) when not prepared.
pub fn venv() -> Option<PathBuf> {
    match std::env::var_os("NETSHIM_OTLP_VENV") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            assert!(
                std::env::var("NETSHIM_REQUIRE_OTLP").as_deref() != Ok("1"),
                "NETSHIM_REQUIRE_OTLP=1 but NETSHIM_OTLP_VENV is not set"
            );
            eprintln!(
                "SKIPPED: NETSHIM_OTLP_VENV not set; run scripts/otlp-test-env.sh DIR and export \
                 NETSHIM_OTLP_VENV=DIR/venv (scripts/test.sh does)"
            );
            None
        }
    }
}

/// The recording sink, killed by pid on drop.
pub struct Sink {
    _process: Process,
    pub grpc_port: u16,
    pub http_port: u16,
    out: PathBuf,
}

impl Sink {
    pub fn start(venv: &Path, dir: &TempDir, name: &str, args: &[&str]) -> Sink {
        let out = dir.path(&format!("{name}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/otlp_sink.py");
        let child = Command::new(venv.join("bin/python"))
            .arg(script)
            // grpcio's own log (TLS name mismatches the tests provoke on purpose) stays quiet.
            .env("GRPC_VERBOSITY", "NONE")
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the sink");
        let mut process = Process { child };
        let stdout = process.child.stdout.take().expect("sink stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's ready line");
        let port = |key: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in sink line {line:?}"))
        };
        Sink {
            grpc_port: port("grpc="),
            http_port: port("http="),
            out,
            _process: process,
        }
    }

    /// Every record of the requests recorded whole so far. The sink appends a request's lines
    /// with one write, which a reader can still catch half done: a last line without its
    /// newline is not written yet, and the records of a request with fewer lines than its
    /// `request_points` are left out until the rest is there.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let written = text.rfind('\n').map_or("", |end| &text[..end]);
        let records: Vec<Value> = written
            .lines()
            .map(|l| serde_json::from_str(l).expect("sink wrote JSON"))
            .collect();
        let mut lines_of: HashMap<u64, u64> = HashMap::new();
        for r in &records {
            *lines_of.entry(request_of(r)).or_default() += 1;
        }
        records
            .into_iter()
            .filter(|r| {
                r["request_points"]
                    .as_u64()
                    .is_none_or(|all| lines_of[&request_of(r)] >= all)
            })
            .collect()
    }

    /// Whether a point of the pod whose namespace path ends in `netns` arrived over `transport`
    /// (`grpc` or `http`).
    pub fn has(&self, transport: &str, netns: &str) -> bool {
        self.records().iter().any(|r| {
            r["transport"] == transport
                && r["resource"]["netshim.netns.path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(netns))
        })
    }
}

/// The number the sink gave the request a record came in.
fn request_of(record: &Value) -> u64 {
    record["request"]
        .as_u64()
        .expect("the sink numbers every request")
}
