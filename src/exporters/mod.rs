//! Exporters publish each finished [`Snapshot`].

pub(crate) mod debug;
pub(crate) mod helper;
pub mod otlp;
pub mod prometheus;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Failed(String),
}

/// The factory of one exporter type (see [`crate::component`]).
pub type ExporterFactory = crate::component::Factory<dyn Exporter>;

#[async_trait]
pub trait Exporter: Send + Sync {
    /// Binds servers, connects clients. Called once, before the first snapshot.
    async fn start(&self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Publishes one snapshot. Snapshots are immutable and shared between exporters.
    async fn export(&self, snapshot: Arc<Snapshot>) -> Result<(), ExportError>;

    /// Flushes and stops; called once at shutdown.
    async fn shutdown(&self) -> Result<(), ExportError> {
        Ok(())
    }
}
