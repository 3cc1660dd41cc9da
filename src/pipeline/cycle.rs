//! One collection cycle: merge what the receivers found, run the resolvers, seal a snapshot.

use std::time::{Instant, SystemTime};

use tracing::{Instrument, warn};

use crate::model::{Batch, Sandboxes, Snapshot};
use crate::resolvers::StartContext;
use crate::self_metrics::AgentMetrics;

use super::Pipeline;

/// Runs the resolvers over the receivers' latest results and seals the snapshot. A resolver
/// that fails is logged and skipped: the batch goes on with what the others added.
pub async fn resolve(
    pipeline: &Pipeline,
    node: &str,
    found: &[Sandboxes],
    metrics: &AgentMetrics,
) -> Snapshot {
    let started = Instant::now();
    let mut batch = Batch::from_receivers(found.iter().map(|list| list.iter()));
    for (id, resolver) in &pipeline.resolvers {
        let span =
            tracing::debug_span!("netshim.resolve", pipeline = %pipeline.name, resolver = %id);
        if let Err(e) = resolver.resolve(&mut batch).instrument(span).await {
            metrics.error("resolver", id);
            warn!(pipeline = %pipeline.name, resolver = %id, error = %e, "resolver failed this cycle");
        }
    }
    let interfaces = batch.pods.iter().map(|p| p.interfaces.len()).sum();
    metrics.cycle(started.elapsed(), batch.pods.len(), interfaces);
    Snapshot {
        pipeline: pipeline.name.clone(),
        node: node.to_string(),
        taken_at: SystemTime::now(),
        pods: batch.pods,
    }
}

/// Runs every receiver of `pipeline` once, then its resolvers: what `netshim discover` prints.
/// Fails only when every receiver failed.
pub async fn collect_once(pipeline: &Pipeline, node: &str) -> anyhow::Result<Snapshot> {
    let health = crate::health::Health::default();
    for (id, resolver) in &pipeline.resolvers {
        resolver
            .start(StartContext {
                id: id.clone(),
                health: health.clone(),
                one_shot: true,
            })
            .await
            .map_err(|e| anyhow::anyhow!("starting resolver {id}: {e}"))?;
    }
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for (id, receiver) in &pipeline.receivers {
        match receiver.collect().await {
            Ok(list) => found.push(list),
            Err(e) => {
                warn!(receiver = %id, error = %e, "receiver failed");
                failures.push(format!("{id}: {e}"));
            }
        }
    }
    if found.is_empty() && !failures.is_empty() {
        anyhow::bail!("every receiver failed: {}", failures.join("; "));
    }
    Ok(resolve(pipeline, node, &found, &AgentMetrics::default()).await)
}
