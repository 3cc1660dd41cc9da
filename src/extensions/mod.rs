//! Extensions: parts of the agent outside the data path (health checks).

pub mod health_check;

use async_trait::async_trait;

use crate::health::Health;

#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("{0}")]
    Failed(String),
}

/// The factory of one extension type (see [`crate::component`]).
pub type ExtensionFactory = crate::component::Factory<dyn Extension>;

#[async_trait]
pub trait Extension: Send + Sync {
    /// Starts serving; `health` is the agent's readiness.
    async fn start(&self, health: Health) -> Result<(), ExtensionError>;

    async fn shutdown(&self) -> Result<(), ExtensionError> {
        Ok(())
    }
}
