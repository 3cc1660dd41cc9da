//! Resolvers enrich a cycle's [`Batch`] in place: find interfaces and counters, add Kubernetes
//! metadata, filter.

pub mod interfaces;

use async_trait::async_trait;

use crate::model::Batch;

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The resolver could do nothing this cycle; the batch goes on as it is.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Resolver: Send + Sync {
    /// Enriches `batch`. Pods the resolver cannot handle are dropped or left as they are (and
    /// logged) inside; an error means the resolver could do nothing at all this cycle.
    async fn resolve(&self, batch: &mut Batch) -> Result<(), ResolverError>;
}
