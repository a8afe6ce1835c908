//! aero-host: publish, verify and serve virtual-machine disk images from any storage backend.

mod commands;
mod config;
mod convert;
mod inspect;
mod progress;
mod publish_args;
mod serve_args;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

// Built-in plugins register themselves when linked; these keep the crates linked.
use backend_fs as _;
use backend_memory as _;
use backend_s3 as _;
use format_aerosparse as _;
use format_qcow2 as _;
use format_raw as _;
use format_vhd as _;

/// Publish, verify and serve virtual-machine disk images from any storage backend.
#[derive(Debug, Parser)]
#[command(name = "aero-host", version, about)]
pub struct Cli {
    /// Storage to use: fs:PATH, memory:, or s3://BUCKET[/ROOT]?endpoint=URL&region=R&force_path_style=true.
    #[arg(long, global = true, env = "AERO_STORAGE")]
    storage: Option<String>,
    /// Load a format plugin from a shared library (repeatable).
    #[arg(long = "plugin", global = true, value_name = "PATH")]
    plugins: Vec<PathBuf>,
    /// Logging filter (e.g. info, debug, aero_host=debug); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "warn,opendal=error")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show an image's format, size, allocation and backing chain.
    Inspect(commands::InspectArgs),
    /// Write an image's guest-visible bytes as a sparse raw file or an AeroSparse image.
    Convert(commands::ConvertArgs),
    /// List the plugins.
    #[command(subcommand)]
    Plugins(commands::PluginsCommand),
    /// Publish an image as chunks, manifest, meta and latest pointer.
    Publish(commands::PublishCommand),
    /// Verify a published image.
    Verify(commands::VerifyArgs),
    /// Serve images over HTTP from the storage (Range bytes endpoint and chunked endpoints).
    Serve(serve_args::ServeArgs),
    /// Run the jobs of a config file: publishes, then verifications.
    Run {
        /// The TOML config.
        config: PathBuf,
        /// Print a JSON summary of each job on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| match &cli.command {
        Command::Serve(args) => {
            commands::serve::log_filter(args, &cli.log_level, "warn,opendal=error")
        }
        _ => cli.log_level.clone(),
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let libs = aero_plugin_host::LibrarySelection {
        paths: cli.plugins.clone(),
        ..Default::default()
    };
    let storage = cli.storage.as_deref();
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect(args, &libs),
        Command::Convert(args) => commands::convert(args, &libs),
        Command::Plugins(cmd) => commands::plugins(cmd, &libs),
        Command::Publish(args) => commands::publish(args, storage, &libs),
        Command::Verify(args) => commands::verify(args, storage, &libs),
        Command::Serve(args) => commands::serve::command(args, storage, &libs),
        Command::Run { config, json } => commands::run(&config, storage, json, &libs),
    };
    match result {
        Ok(code) => code,
        // A reader that stopped reading (`aero-host inspect IMG | head -1`): exit quietly with
        // the status of a process ended by SIGPIPE, as other Unix tools do.
        Err(e) if e.chain().any(|c| c.is::<commands::StdoutClosed>()) => ExitCode::from(128 + 13),
        Err(e) => {
            eprintln!("aero-host: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
