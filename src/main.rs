//! The `netshim` command line. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::{info, warn};

use netshim::component::BuildContext;
use netshim::config::{self, Source, TelemetryConfig};
use netshim::pipeline::registry;
use netshim::pipeline::{self, Service};
use netshim::{output, sys, telemetry};

/// The configuration used when no `--config` is given.
const DEFAULT_CONFIG: &str = include_str!("../config/default.yaml");

#[derive(Parser)]
#[command(
    name = "netshim",
    version,
    about = "Pod network interfaces, their host peers and pod-side counters, for every pod on this node",
    long_about = None,
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// For `netshim --config F` (run) and `netshim --config F validate|discover`.
    #[command(flatten)]
    config: ConfigArgs,
}

/// The `--config` option of the commands that read a configuration (not `components`).
#[derive(Args, Default)]
struct ConfigArgs {
    /// Configuration file; may be given several times (merged in order). Default: built in.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    configs: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default when no subcommand is given).
    Run(ConfigArgs),
    /// Check a configuration without starting anything; exit 1 when it is invalid.
    Validate(ConfigArgs),
    /// Run the receivers and resolvers once and print what was found.
    Discover {
        #[command(flatten)]
        config: ConfigArgs,
        /// `table` for people, `json` for tools.
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
        /// Which pipeline to run. Default: the first (`metrics`).
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// List every component type, by kind, with aliases.
    Components,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    // Before any thread exists.
    sys::memory::limit_arenas();
    let cli = Cli::parse();
    // Files given before the command come first, then those after it.
    let mut configs = cli.config.configs;
    let command = cli.command.unwrap_or(Command::Run(ConfigArgs::default()));
    if let Command::Run(c) | Command::Validate(c) | Command::Discover { config: c, .. } = &command {
        configs.extend(c.configs.iter().cloned());
    }
    match command {
        Command::Components => {
            print_components();
            ExitCode::SUCCESS
        }
        Command::Validate(_) => match load(&configs) {
            Ok((service, _)) => {
                for w in &service.warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "configuration is valid: {} pipeline(s)",
                    service.pipelines.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run(_) => report(run(&configs)),
        Command::Discover {
            output, pipeline, ..
        } => report(discover(&configs, output, pipeline.as_deref())),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netshim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads, validates and builds the configuration: nothing is started, nothing is logged yet
/// (warnings are in `Service::warnings`).
fn load(paths: &[PathBuf]) -> anyhow::Result<(Service, TelemetryConfig)> {
    let sources: Vec<Source> = if paths.is_empty() {
        vec![Source::Inline {
            name: "<built-in default>".into(),
            text: DEFAULT_CONFIG.into(),
        }]
    } else {
        paths.iter().cloned().map(Source::File).collect()
    };
    let loaded =
        config::load(&sources).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let telemetry = loaded.config.service.telemetry.clone();
    let mut service = pipeline::build(loaded.config, BuildContext::from_environment())
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    service.warnings.splice(0..0, loaded.warnings);
    Ok((service, telemetry))
}

/// One thread runs every task: the agent's async work is waiting (timers, sockets, streams),
/// and what blocks or computes (scans, netlink, renders) goes to the blocking pool. With a
/// worker per core, each hand-off between a blocking thread and a task woke another worker
/// too: at 10 pods those context switches were most of a steady cycle's CPU.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn prepare() {
    match sys::limits::raise_fd_limit() {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open file limit"),
    }
}

fn run(paths: &[PathBuf]) -> anyhow::Result<()> {
    let (service, telemetry_config) = load(paths)?;
    runtime()?.block_on(async move {
        let telemetry = telemetry::init(
            &telemetry_config,
            &service.context.node_name,
            Arc::clone(&service.context.metrics),
        )
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
        for w in &service.warnings {
            warn!("{w}");
        }
        prepare();
        let result = service.run(shutdown_signal()).await;
        telemetry.shutdown();
        result
    })
}

fn discover(paths: &[PathBuf], format: Format, name: Option<&str>) -> anyhow::Result<()> {
    let (service, telemetry_config) = load(paths)?;
    telemetry::init_logs(&telemetry_config.logs);
    for w in &service.warnings {
        warn!("{w}");
    }
    prepare();
    let pipeline = service.pipeline(name).with_context(|| match name {
        Some(n) => format!("no pipeline named \"{n}\""),
        None => "no pipeline configured".into(),
    })?;
    let snapshot =
        runtime()?.block_on(pipeline::collect_once(pipeline, &service.context.node_name))?;
    match format {
        Format::Json => println!("{}", output::json(&snapshot)),
        Format::Table => print!("{}", output::table(&snapshot)),
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}

fn print_components() {
    let mut current = None;
    for row in registry::listing() {
        if current != Some(row.kind) {
            println!("{}:", row.kind.section());
            current = Some(row.kind);
        }
        let aliases = if row.aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases: {})", row.aliases.join(", "))
        };
        println!("  {:<16}{}{aliases}", row.type_name, row.summary);
    }
}
