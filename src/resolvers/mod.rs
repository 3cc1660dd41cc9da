//! Resolvers enrich a cycle's [`Batch`] in place: find interfaces and counters, add Kubernetes
//! metadata, filter.

pub mod filter;
pub mod interfaces;
pub mod k8s_attributes;

use async_trait::async_trait;

use crate::health::Health;
use crate::model::Batch;

/// What a resolver is told when it starts.
#[derive(Debug, Clone)]
pub struct StartContext {
    /// The component id (`k8s_attributes/x`), for logs and health.
    pub id: String,
    /// Where to report readiness.
    pub health: Health,
    /// `netshim discover`: one cycle, whose output should be complete, so resolvers that sync
    /// from elsewhere wait for their first sync (within their own time limit).
    pub one_shot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The resolver could do nothing this cycle; the batch goes on as it is.
    #[error("{0}")]
    Failed(String),
}

/// The factory of one resolver type (see [`crate::component`]).
pub type ResolverFactory = crate::component::Factory<dyn Resolver>;

#[async_trait]
pub trait Resolver: Send + Sync {
    /// Starts background work (a watch, say). Called once, before the first cycle. An error
    /// stops the agent from starting.
    async fn start(&self, _ctx: StartContext) -> Result<(), ResolverError> {
        Ok(())
    }

    /// Enriches `batch`. Pods the resolver cannot handle are dropped or left as they are (and
    /// logged) inside; an error means the resolver could do nothing at all this cycle. Called on
    /// the collection thread (or by `netshim discover`), where blocking calls are fine.
    async fn resolve(&self, batch: &mut Batch) -> Result<(), ResolverError>;
}
