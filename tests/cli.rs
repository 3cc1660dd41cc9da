//! The `netshim` binary as an operator runs it: `components`, `validate`, `discover`, `run`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn netshim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netshim"))
}

/// Writes `text` to a file unique to this test and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netshim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn components_lists_every_type_by_kind() {
    let out = netshim().arg("components").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "receivers:",
        "netns",
        "resolvers:",
        "interfaces",
        "filter",
        "exporters:",
        "debug",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[test]
fn help_is_available_for_every_subcommand() {
    for sub in [
        &[][..],
        &["run"],
        &["validate"],
        &["discover"],
        &["components"],
    ] {
        let out = netshim().args(sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

#[test]
fn validate_accepts_the_default_and_a_good_file() {
    let out = netshim().arg("validate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let good = config_file(
        "good.yaml",
        "receivers:\n  netns:\n    collection_interval: ${env:NST_INTERVAL:-5s}\nresolvers:\n  interfaces:\nexporters:\n  debug/a:\n    verbosity: basic\nservice:\n  pipelines:\n    metrics/x:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [debug/a]\n",
    );
    let out = netshim()
        .arg("validate")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_every_problem_with_its_path_and_exits_1() {
    let bad = config_file(
        "bad.yaml",
        r#"receivers:
  netns:
    colection_interval: 5s
  nosuch: {}
exporters:
  debug:
    verbosity: loud
service:
  pipelines:
    metrics:
      receivers: [netns, missing]
      exporters: []
    traces:
      receivers: [netns]
      exporters: [debug]
"#,
    );
    let out = netshim()
        .arg("validate")
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "receivers::netns",
        "colection_interval",
        "receivers::nosuch",
        "valid types are: netns",
        "exporters::debug",
        "loud",
        "references receiver \"missing\" which is not configured",
        "must have at least one exporter",
        "service::pipelines::traces",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from:\n{err}");
    }
}

#[test]
fn validate_gives_line_and_column_of_a_yaml_error() {
    let bad = config_file("syntax.yaml", "receivers:\n  netns: {\nservice: [\n");
    let out = netshim()
        .arg("validate")
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("syntax.yaml:"), "{err}");
}

#[test]
fn configs_merge_in_order() {
    let base = config_file(
        "base.yaml",
        "receivers:\n  netns:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      exporters: [debug]\n",
    );
    // The override breaks a setting of the base: the merged result must be invalid.
    let overlay = config_file(
        "overlay.yaml",
        "exporters:\n  debug:\n    verbosity: nope\n",
    );
    let ok = netshim()
        .arg("validate")
        .arg("-c")
        .arg(&base)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let out = netshim()
        .args(["validate", "-c"])
        .arg(&base)
        .arg("-c")
        .arg(&overlay)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exporters::debug"));
}

#[test]
fn discover_prints_json_and_a_table() {
    let ns = Netns::new("nst-cli-disc");
    let _l = veth("lxcnstcli0", "eth0", &ns.name);

    let out = netshim()
        .args(["discover", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let pods = doc["pods"].as_array().expect("pods array");
    let pod = pods
        .iter()
        .find(|p| p["netns"]["path"] == "/run/netns/nst-cli-disc")
        .expect("test pod present");
    assert_eq!(pod["netns"]["inode"], inode("/run/netns/nst-cli-disc"));
    assert_eq!(pod["host_network"], false);
    assert!(pod["pod"].is_null());
    assert!(pod["sandbox_id"].is_null());
    let eth0 = &pod["interfaces"][0];
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(eth0["kind"], "veth");
    assert_eq!(eth0["peer"]["name"], "lxcnstcli0");
    assert_eq!(eth0["peer"]["ifindex"], host_ifindex("lxcnstcli0"));
    for c in [
        "rx_bytes",
        "tx_bytes",
        "rx_packets",
        "tx_packets",
        "rx_errors",
        "tx_errors",
        "rx_dropped",
        "tx_dropped",
    ] {
        assert!(eth0["counters"][c].is_u64(), "{c}");
    }

    let out = netshim().arg("discover").output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with("/run/netns/nst-cli-disc "))
        .unwrap_or_else(|| panic!("no row in:\n{table}"));
    assert!(
        row.contains("eth0") && row.contains("veth") && row.contains("lxcnstcli0"),
        "{row}"
    );
}

#[test]
fn run_prints_snapshots_and_stops_cleanly_on_sigterm() {
    let ns = Netns::new("nst-cli-run");
    let _l = veth("lxcnstrun0", "eth0", &ns.name);
    let cfg = config_file(
        "run.yaml",
        "receivers:\n  netns:\n    collection_interval: 200ms\nresolvers:\n  interfaces:\nexporters:\n  debug:\n    verbosity: normal\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [debug]\n",
    );
    let child = netshim()
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = Process { child };
    let stdout = agent.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut snapshots = 0;
    let mut saw_pod = false;
    while snapshots < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            snapshots += line.starts_with("snapshot:") as usize;
            saw_pod |= line.starts_with("/run/netns/nst-cli-run ") && line.contains("lxcnstrun0");
        }
    }
    assert!(snapshots >= 2, "periodic snapshots printed");
    assert!(saw_pod, "the test pod appears in the output");

    let status = Command::new("kill")
        .args(["-TERM", &agent.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let code = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code:?}");
}

#[test]
fn every_example_config_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = netshim()
                .arg("validate")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn config_is_offered_only_where_a_configuration_is_read() {
    let help = |args: &[&str]| {
        let out = netshim().args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!help(&["components", "--help"]).contains("--config"));
    for command in ["run", "validate", "discover"] {
        assert!(help(&[command, "--help"]).contains("--config"), "{command}");
    }
    // Before the command and after it both work (files before come first).
    let good = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/default.yaml");
    for args in [
        vec!["--config", good.to_str().unwrap(), "validate"],
        vec!["validate", "--config", good.to_str().unwrap()],
    ] {
        assert!(
            netshim().args(&args).status().unwrap().success(),
            "{args:?}"
        );
    }
}

#[test]
fn discover_says_so_when_there_is_no_pod() {
    let empty = std::env::temp_dir().join(format!("netshim-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let config = config_file(
        "empty.yaml",
        &format!(
            "receivers:\n  netns:\n    paths: [{}]\n    scan_proc: false\nresolvers:\n  interfaces:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [debug]\n",
            empty.display()
        ),
    );
    let out = netshim()
        .args(["discover", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&empty);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("no pods found"), "{text}");
    assert!(!text.contains("INTERFACE"), "a bare header: {text}");
}
