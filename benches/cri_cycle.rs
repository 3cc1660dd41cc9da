//! `cargo bench --bench cri_cycle` (root; run `scripts/cri-test-assets.sh target/cri-assets`
//! first and export `NETSHIM_CRI_ASSETS=$PWD/target/cri-assets`): what one `cri` receiver cycle
//! costs against a real containerd, in calls and in time, with no pod changed and with N pods
//! new since the last cycle. `NETSHIM_BENCH_CRI_PODS` (default 20) sets N.
//!
//! Run as a test (`cargo test --benches`) it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use netshim::receivers::Receiver;
use netshim::receivers::cri::{Config, CriReceiver, Endpoint};
use support::containerd::{Cni, Containerd};

const ROUNDS: usize = 30;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` runs bench targets too: nothing to check there
    }
    let Some(assets) = std::env::var_os("NETSHIM_CRI_ASSETS").map(std::path::PathBuf::from) else {
        eprintln!("set NETSHIM_CRI_ASSETS (see the header of benches/cri_cycle.rs)");
        std::process::exit(2);
    };
    let n: usize = std::env::var("NETSHIM_BENCH_CRI_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let setup = Instant::now();
        let c = Containerd::start(
            "cri-bench",
            Cni::Bridge {
                bridge: "nstcribench0",
                subnet: "169.254.204.0/22",
            },
            &assets,
        );
        let start_time = setup.elapsed();
        let receiver = CriReceiver::new(
            Config {
                endpoint: format!("unix://{}", c.socket.display()),
                ..Config::default()
            },
            Endpoint::Socket(c.socket.clone()),
        );
        let base = N_BASE;
        for i in 0..base {
            c.run_pod(&format!("base-{i}"), "bench", &format!("00000000-0000-4000-8000-{i:012}"), false)
                .await;
        }
        receiver.collect().await.expect("first cycle");

        // No change: ROUNDS cycles.
        let calls0 = receiver.calls();
        let mut quiet = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let found = receiver.collect().await.expect("cycle");
            quiet.push(t.elapsed());
            assert_eq!(found.len(), base);
        }
        let quiet_calls = (receiver.calls() - calls0) as f64 / ROUNDS as f64;

        // N new pods, then one cycle.
        let t = Instant::now();
        for i in 0..n {
            c.run_pod(&format!("new-{i}"), "bench", &format!("10000000-0000-4000-8000-{i:012}"), false)
                .await;
        }
        let run_time = t.elapsed();
        let calls1 = receiver.calls();
        let t = Instant::now();
        let found = receiver.collect().await.expect("cycle");
        let changed = t.elapsed();
        assert_eq!(found.len(), base + n);
        let changed_calls = receiver.calls() - calls1;

        println!("cri receiver cycle against containerd {} pods ready", base);
        println!("  containerd start + image import: {:.0} ms", start_time.as_secs_f64() * 1e3);
        println!(
            "  no pod changed:  {:.2} ms median over {ROUNDS} cycles, {quiet_calls:.1} CRI calls per cycle",
            median(quiet).as_secs_f64() * 1e3
        );
        println!(
            "  {n} pods new:     {:.2} ms, {changed_calls} CRI calls (2 lists + {n} verbose statuses, {} at a time)",
            changed.as_secs_f64() * 1e3,
            8
        );
        println!(
            "  (RunPodSandbox itself: {:.0} ms per pod)",
            run_time.as_secs_f64() * 1e3 / n as f64
        );
    });
}

/// Pods present before measuring.
const N_BASE: usize = 10;
