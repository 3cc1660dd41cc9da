//! The `debug` exporter: prints each snapshot to stdout, like the Collector's debug exporter.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::exporters::ExporterFactory;
use crate::model::Snapshot;
use crate::output;

use super::{ExportError, Exporter};

pub const TYPE: &str = "debug";

/// How much of each snapshot to print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per snapshot.
    #[default]
    Basic,
    /// One line per pod interface (the `discover` table).
    Normal,
    /// The whole snapshot as JSON (the `discover --output json` schema).
    Detailed,
}

/// Settings of the `debug` exporter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `basic` (default), `normal` or `detailed`.
    pub verbosity: Verbosity,
}

impl Validate for Config {}

pub const FACTORY: ExporterFactory = Factory::new::<Config>(
    TYPE,
    "prints each snapshot to stdout (basic | normal | detailed)",
);

impl ComponentConfig for Config {
    type Component = dyn Exporter;

    fn build(self, _: &BuildSite<'_>) -> Result<Box<dyn Exporter>, ConfigErrors> {
        Ok(Box::new(DebugExporter { config: self }))
    }
}

pub struct DebugExporter {
    config: Config,
}

impl DebugExporter {
    /// The text printed for one snapshot.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        match self.config.verbosity {
            Verbosity::Basic => format!("{}\n", output::summary(snapshot)),
            Verbosity::Normal => {
                format!("{}\n{}", output::summary(snapshot), output::table(snapshot))
            }
            Verbosity::Detailed => output::json(snapshot) + "\n",
        }
    }
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        let text = self.render(&snapshot);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| ExportError::Failed(format!("writing to stdout: {e}")))
    }
}
