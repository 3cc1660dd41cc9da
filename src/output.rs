//! Human and machine renderings of a snapshot, shared by `discover` and the `debug` exporter.

use std::fmt::Write;

use serde::Serialize;

use crate::model::{PodNetwork, Snapshot};

/// The `discover --output json` document: `{"node": …, "pods": [...]}`.
pub fn json(snapshot: &Snapshot) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        node: &'a str,
        pods: &'a [PodNetwork],
    }
    let doc = Doc {
        node: &snapshot.node,
        pods: &snapshot.pods,
    };
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// One line: how many pods and interfaces.
pub fn summary(snapshot: &Snapshot) -> String {
    let interfaces: usize = snapshot.pods.iter().map(|p| p.interfaces.len()).sum();
    let peered: usize = snapshot
        .pods
        .iter()
        .flat_map(|p| &p.interfaces)
        .filter(|i| i.peer.is_some())
        .count();
    format!(
        "snapshot: node {} — {} pods, {} interfaces ({} with a host peer)",
        snapshot.node,
        snapshot.pods.len(),
        interfaces,
        peered
    )
}

/// How a pod is named for people: `namespace/name`, else its uid, else its namespace path.
pub fn pod_label(pod: &PodNetwork) -> String {
    let s = &pod.sandbox;
    if let Some(p) = &s.pod {
        match (&p.namespace, &p.name, &p.uid) {
            (Some(ns), Some(name), _) => return format!("{ns}/{name}"),
            (None, Some(name), _) => return name.clone(),
            (_, None, Some(uid)) => return format!("uid:{uid}"),
            _ => {}
        }
    }
    match &s.netns {
        Some(n) => n.path.display().to_string(),
        None => s.sandbox_id.clone().unwrap_or_else(|| "?".into()),
    }
}

/// An aligned table, one row per pod interface (and one per pod with none).
pub fn table(snapshot: &Snapshot) -> String {
    if snapshot.pods.is_empty() {
        return "no pods found: no runtime sandbox and no network namespace besides the host's\n"
            .into();
    }
    let header = [
        "POD",
        "INTERFACE",
        "KIND",
        "HOST PEER",
        "ADDRESSES",
        "RX BYTES",
        "TX BYTES",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for pod in &snapshot.pods {
        let label = pod_label(pod);
        if pod.interfaces.is_empty() {
            let why = if pod.sandbox.host_network {
                "(host network)"
            } else {
                "(none)"
            };
            rows.push([
                label,
                why.into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            continue;
        }
        for i in &pod.interfaces {
            let peer = i
                .peer
                .as_ref()
                .map(|p| format!("{} ({})", p.name, p.ifindex))
                .unwrap_or_else(|| "-".into());
            let addrs = if i.addresses.is_empty() {
                "-".into()
            } else {
                i.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            rows.push([
                label.clone(),
                i.name.to_string(),
                i.kind.to_string(),
                peer,
                addrs,
                i.counters.rx_bytes.to_string(),
                i.counters.tx_bytes.to_string(),
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left-aligned; no trailing spaces.
            let last = i + 1 == cells.len();
            if i >= 5 {
                let _ = write!(l, "{cell:>w$}");
            } else if last {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}");
            }
            if !last {
                l.push_str("  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}
