//! The recording OTLP sink (`tests/otlp/otlp_sink.py`, gRPC and HTTP, one JSON line per data
//! point) in the venv `scripts/otlp-test-env.sh` prepares.

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

    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("sink wrote JSON"))
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
