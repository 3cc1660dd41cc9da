//! `cargo bench --bench agent_scale`: the running agent (the release binary, `netns` receiver →
//! `interfaces` → `prometheus`) at 1000 pods, as an operator would see it:
//!
//! - RSS once every pod is reported, after the scrape load and after churn (and the peak);
//! - CPU per cycle (process CPU time ÷ cycles over an idle window; `collection_interval: 1s`);
//! - `/metrics` latency over sequential scrapes (client side, HTTP included), and a load of
//!   100 scrapes/s for 20 s from 4 threads: errors, achieved rate, latency;
//! - open fds and sockets before and after rounds of churn (100 pods deleted and 100 made per
//!   round), and whether the deleted pods' veths went (the agent released their namespaces).
//!
//! Needs root and `ip`. Pods are namespaces `nsa-NNNNN` with a veth whose host end is
//! `nsaNNNNN`, removed at the end (also on panic). `NETSHIM_SCALE_PODS` (default 1000) and
//! `NETSHIM_SCALE_ROUNDS` (default 5) change the sizes. Run as a test (`cargo test --benches`),
//! it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/support/agent.rs"]
mod agent;
#[path = "../tests/support/pods.rs"]
mod pods;

use std::path::Path;
use std::time::{Duration, Instant};

use agent::{Agent, sample};
use pods::PodFarm;

const PREFIX: &str = "nsa";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many of the farm's pods `/metrics` reports (series of `netshim_pod_interface_info` whose
/// host interface has the farm's prefix).
fn reported(metrics: &str) -> usize {
    let needle = format!("host_interface=\"{PREFIX}");
    metrics
        .lines()
        .filter(|l| l.starts_with("netshim_pod_interface_info{") && l.contains(&needle))
        .count()
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits until the agent reports exactly `n` of the farm's pods; how long it took.
fn converge(agent: &Agent, n: usize) -> Duration {
    agent
        .wait_for(Duration::from_secs(60), |m| reported(m) == n)
        .unwrap_or_else(|| {
            panic!(
                "the agent did not converge on {n} pods in 60 s (reports {})",
                reported(&agent.metrics())
            )
        })
}

struct Load {
    scrapes: usize,
    errors: usize,
    took: Duration,
    latencies: Vec<Duration>,
}

/// `rate` scrapes per second for `length`, spread over `threads` threads, each on its own
/// schedule (a late scrape does not push the next ones back).
fn scrape_load(agent: &Agent, rate: usize, length: Duration, threads: usize) -> Load {
    let per_thread = Duration::from_secs_f64(threads as f64 / rate as f64);
    let count = (length.as_secs_f64() * rate as f64 / threads as f64) as usize;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let endpoint = agent.endpoint();
            std::thread::spawn(move || {
                // Threads offset from each other so scrapes are evenly spread.
                let offset = per_thread.mul_f64(t as f64 / threads as f64);
                let mut latencies = Vec::with_capacity(count);
                let mut errors = 0;
                for k in 0..count {
                    let due = started + offset + per_thread * k as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match endpoint.get("/metrics") {
                        Ok((200, body, took)) if reported(&body) > 0 => latencies.push(took),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut load = Load {
        scrapes: 0,
        errors: 0,
        took: Duration::ZERO,
        latencies: Vec::new(),
    };
    for h in handles {
        let (latencies, errors) = h.join().expect("scrape thread");
        load.scrapes += latencies.len() + errors;
        load.errors += errors;
        load.latencies.extend(latencies);
    }
    load.took = started.elapsed();
    load
}

fn run() {
    let pods = env_usize("NETSHIM_SCALE_PODS", 1000);
    let rounds = env_usize("NETSHIM_SCALE_ROUNDS", 5);
    let churn = (pods / 10).max(1);

    let mut farm = PodFarm::new(PREFIX);
    let t = Instant::now();
    farm.add(pods);
    println!("made {pods} pods in {:.1} s", t.elapsed().as_secs_f64());

    let binary = Path::new(env!("CARGO_BIN_EXE_netshim"));
    let agent = Agent::start(binary, "netshim-scale", |port| {
        format!(
            "receivers:\n  netns:\n    collection_interval: 1s\nresolvers:\n  interfaces:\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n"
        )
    });
    let first = converge(&agent, pods);
    println!(
        "agent reported all {pods} pods {:.2} s after start",
        first.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let rss_ready = agent.rss_kib();

    // CPU per cycle, idle (no scrape but the two reads that bound the window).
    let text = agent.metrics();
    let (c0, s0) = (
        sample(&text, "netshim_cycles_total").unwrap_or(0.0),
        sample(&text, "netshim_cycle_duration_seconds_sum").unwrap_or(0.0),
    );
    let cpu0 = agent.cpu();
    std::thread::sleep(Duration::from_secs(20));
    let cpu1 = agent.cpu();
    let text = agent.metrics();
    let (c1, s1) = (
        sample(&text, "netshim_cycles_total").unwrap_or(0.0),
        sample(&text, "netshim_cycle_duration_seconds_sum").unwrap_or(0.0),
    );
    let cycles = (c1 - c0).max(1.0);
    let cpu_per_cycle = (cpu1 - cpu0).as_secs_f64() * 1e3 / cycles;
    let resolve_per_cycle = (s1 - s0) * 1e3 / cycles;

    // Sequential scrapes.
    let mut sequential = Vec::new();
    let mut body_len = 0;
    for _ in 0..300 {
        let (status, body, took) = agent.get("/metrics").expect("scrape");
        assert_eq!(status, 200);
        assert_eq!(reported(&body), pods, "every pod in every scrape");
        body_len = body.len();
        sequential.push(took);
    }

    // 100 scrapes/s.
    let load = scrape_load(&agent, 100, Duration::from_secs(20), 4);
    let rss_loaded = agent.rss_kib();

    // Churn.
    let (fds_before, sockets_before) = agent.fds();
    let own_before = agent.own_sockets();
    let kinds_before = agent.fd_kinds();
    let mut converged = Vec::new();
    let mut deleted = Vec::new();
    for _ in 0..rounds {
        deleted.extend(farm.remove_oldest(churn));
        farm.add(churn);
        converged.push(converge(&agent, pods));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (fds_after, sockets_after) = agent.fds();
    let own_after = agent.own_sockets();
    let kinds_after = agent.fd_kinds();
    if kinds_after != kinds_before {
        println!("open fds by kind before churn: {kinds_before:?}");
        println!("open fds by kind after churn:  {kinds_after:?}");
    }
    let released = farm.wait_links_gone(&deleted, Duration::from_secs(60));
    let rss_churned = agent.rss_kib();
    let peak = agent.peak_rss_kib();
    let panicked = agent.stderr().contains("panicked");

    let lat = &load.latencies;
    println!();
    println!("agent at {pods} pods (2-core machine, one run)");
    println!("| what | measured | target |");
    println!("|---|---:|---|");
    println!(
        "| RSS: all pods reported / after scrape load / after churn / peak | {:.1} / {:.1} / {:.1} / {:.1} MiB | ≤ 25 MiB |",
        mib(rss_ready),
        mib(rss_loaded),
        mib(rss_churned),
        mib(peak)
    );
    println!(
        "| CPU per cycle (idle, {cycles:.0} cycles) | {cpu_per_cycle:.1} ms | reported (≤ 5 ms at 250 pods) |"
    );
    println!("| cycle (resolve) wall time, mean | {resolve_per_cycle:.1} ms | ≤ 50 ms |");
    println!(
        "| `/metrics` sequential, median / p90 / p99 (300 scrapes, {} KiB) | {:.2} / {:.2} / {:.2} ms | ≤ 10 ms median |",
        body_len / 1024,
        ms(percentile(&sequential, 0.5)),
        ms(percentile(&sequential, 0.9)),
        ms(percentile(&sequential, 0.99))
    );
    println!(
        "| 100 scrapes/s for 20 s: scrapes, errors, achieved rate | {}, {}, {:.1}/s | no error |",
        load.scrapes,
        load.errors,
        load.scrapes as f64 / load.took.as_secs_f64()
    );
    if !lat.is_empty() {
        println!(
            "| under that load, median / p99 / max | {:.2} / {:.2} / {:.2} ms | |",
            ms(percentile(lat, 0.5)),
            ms(percentile(lat, 0.99)),
            ms(percentile(lat, 1.0))
        );
    }
    println!(
        "| churn: {rounds} rounds of {churn} deleted + {churn} made; converged in (max) | {:.2} s | ≤ 1 cycle |",
        converged.iter().max().map_or(0.0, |d| d.as_secs_f64())
    );
    println!(
        "| open fds / sockets before → after churn | {fds_before} / {sockets_before} → {fds_after} / {sockets_after} | |"
    );
    println!(
        "| sockets beyond one per namespace reported, before → after churn | {own_before} → {own_after} | no growth |"
    );
    println!(
        "| deleted pods' veths gone (namespaces released) | {} | all |",
        if released { "all" } else { "NOT ALL" }
    );
    println!(
        "| panics in the agent's stderr | {} | none |",
        if panicked { "YES" } else { "none" }
    );

    let mut failed = Vec::new();
    if load.errors > 0 {
        failed.push("scrape errors under load");
    }
    // Namespaces made by anyone else on the machine move the raw counts; what the agent holds
    // for itself must not grow.
    if own_after > own_before {
        failed.push("sockets beyond one per namespace grew under churn");
    }
    if !released {
        failed.push("deleted namespaces not released");
    }
    if panicked {
        failed.push("the agent panicked");
    }
    drop(agent);
    drop(farm);
    if !failed.is_empty() {
        eprintln!("FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then do nothing, since
    // this needs root and takes a while.
    if !std::env::args().any(|a| a == "--bench") {
        println!("agent_scale: skipped (run it with `cargo bench --bench agent_scale`, as root)");
        return;
    }
    run();
}
