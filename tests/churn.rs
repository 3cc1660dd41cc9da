//! 1000 pods created and deleted in bursts while `/metrics` is scraped without pause: every
//! scrape answers, the agent converges on exactly the live pods after each burst (no stale
//! series), it holds one socket per namespace and nothing more (sockets − pods stays the same),
//! the deleted namespaces are released (their host veths go), and it never panics.
//!
//! Real kernel, real agent binary. Pods are `nsc-NNNNN` with host ends `nscNNNNN`
//! (`support/pods.rs`), removed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::agent::{Agent, sample};
use support::pods::PodFarm;

const PREFIX: &str = "nsc";

/// The farm's pods `/metrics` reports, by host interface name.
fn reported(metrics: &str) -> Vec<String> {
    let needle = format!("host_interface=\"{PREFIX}");
    let mut names: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("netshim_pod_interface_info{"))
        .filter_map(|l| {
            let at = l.find(&needle)? + "host_interface=\"".len();
            let rest = &l[at..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_thousand_pods_come_and_go_in_bursts_while_scraped() {
    let mut farm = PodFarm::new(PREFIX);
    let agent = Agent::start(
        Path::new(env!("CARGO_BIN_EXE_netshim")),
        "nst-churn",
        |port| {
            format!(
                "receivers:\n  netns:\n    collection_interval: 2s\nresolvers:\n  interfaces:\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n"
            )
        },
    );
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |m| sample(
                m,
                "netshim_cycles_total"
            )
            .is_some_and(|c| c >= 1.0))
            .is_some(),
        "first cycle"
    );
    // Scrapes back to back for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        // Only the endpoint: if the test fails, the agent must still be dropped (and stopped).
        let (endpoint, stop, scrapes) = (agent.endpoint(), Arc::clone(&stop), Arc::clone(&scrapes));
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                match endpoint.get("/metrics") {
                    Ok((200, body, took)) if body.contains("netshim_cycles_total") => {
                        slowest = slowest.max(took);
                    }
                    Ok((status, _, _)) => failures.push(format!("status {status}")),
                    Err(e) => failures.push(e),
                }
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
            (failures, slowest)
        })
    };

    // Taken once the scraper's connection is open too (the client keeps it alive).
    while scrapes.load(Ordering::Relaxed) < 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let baseline = agent.own_sockets();

    let converge = |farm: &PodFarm, what: &str| -> Duration {
        let mut want: Vec<String> = farm.live().iter().map(|i| farm.host_name(*i)).collect();
        want.sort();
        let started = Instant::now();
        let mut last = Vec::new();
        while started.elapsed() < Duration::from_secs(30) {
            last = reported(&agent.metrics());
            if last == want {
                eprintln!(
                    "churn: {what}: /metrics has exactly the {} live pods after {:?}",
                    want.len(),
                    started.elapsed()
                );
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{what}: after 30 s /metrics reports {} pods, {} live",
            last.len(),
            want.len()
        );
    };

    let mut slowest_convergence = Duration::ZERO;
    let mut deleted = Vec::new();
    // Up to 1000 in bursts of 250.
    for burst in 0..4 {
        farm.add(250);
        slowest_convergence =
            slowest_convergence.max(converge(&farm, &format!("burst {burst}: +250")));
    }
    assert_eq!(farm.len(), 1000);
    let at_1000 = agent.own_sockets();
    // Half replaced, at once.
    deleted.extend(farm.remove_oldest(500));
    farm.add(500);
    slowest_convergence = slowest_convergence.max(converge(&farm, "-500 +500"));
    let after_replace = agent.own_sockets();
    assert!(
        after_replace <= at_1000,
        "sockets beyond one per pod grew: {after_replace} > {at_1000}"
    );
    // Everything gone, in bursts.
    while farm.len() > 0 {
        deleted.extend(farm.remove_oldest(250));
        slowest_convergence = slowest_convergence.max(converge(&farm, "-250"));
    }

    stop.store(true, Ordering::Relaxed);
    let (failures, slowest_scrape) = scraper.join().unwrap();
    let released = farm.wait_links_gone(&deleted, Duration::from_secs(60));
    let own_after = agent.own_sockets();
    let stderr = agent.stderr();
    eprintln!(
        "churn: {} scrapes, {} failed, slowest {slowest_scrape:?}; slowest convergence \
         {slowest_convergence:?}; own sockets {baseline} at start, {at_1000} at 1000 pods, \
         {own_after} at the end",
        scrapes.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "scrapes failed: {failures:?}");
    assert!(
        released,
        "{} of the deleted pods' veths are still there: their namespaces were not released",
        farm.links_left(&deleted)
    );
    assert!(
        own_after <= baseline,
        "the agent holds more sockets than at the start ({own_after} > {baseline})"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
