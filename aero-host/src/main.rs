//! aero-host: publish, verify and serve virtual-machine disk images from any storage backend.

mod commands;
mod output;
mod runtime;

// The command line and configuration live in the package's library target (`src/lib.rs`), so
// that the fuzz targets can reach the config loader; `crate::cli` etc. keep naming them here.
use aero_host::{cli, config, gateway_args, serve_args};

use clap::Parser;
use cli::{Cli, Command, DEFAULT_LOG_LEVEL};
use serve_args::{LogFormat, ServeArgs};
use std::process::ExitCode;

// Built-in plugins register themselves when linked; these keep the crates linked.
use backend_fs as _;
use backend_memory as _;
use backend_s3 as _;
use format_aerosparse as _;
use format_qcow2 as _;
use format_raw as _;
use format_vhd as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| match &cli.command {
        Command::Serve(args) => {
            commands::serve::log_filter(args, &cli.log_level, DEFAULT_LOG_LEVEL)
        }
        _ => cli.log_level.clone(),
    });
    // `run` reads the format from the environment: logging starts before its file is read.
    let format = match &cli.command {
        Command::Serve(args) => args.log_format(),
        Command::Run { .. } => ServeArgs::default().log_format(),
        _ => Ok(LogFormat::Text),
    };
    let format = match format {
        Ok(f) => f,
        Err(e) => {
            eprintln!("aero-host: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let libs = aero_plugin_host::LibrarySelection {
        paths: cli.plugins.clone(),
        ..Default::default()
    };
    let storage = cli.storage.as_deref();
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::command(args, &libs),
        Command::Convert(args) => commands::convert::command(args, &libs),
        Command::Plugins(cmd) => commands::plugins::command(cmd, &libs),
        Command::Publish(args) => commands::publish::command(args, storage, &libs),
        Command::Verify(args) => commands::verify::command(args, storage, &libs),
        Command::Pull(args) => commands::pull::command(args, storage, &libs),
        Command::Images(cmd) => commands::images::command(cmd),
        Command::Serve(args) => commands::serve::command(args, storage, &libs),
        Command::Nbd(args) => commands::nbd::command(args, storage, &libs),
        Command::Gateway(cmd) => commands::gateway::command(*cmd, &libs),
        Command::Run { config, json } => commands::run::command(&config, storage, json, &libs),
    };
    match result {
        Ok(code) => code,
        // A reader that stopped reading (`aero-host inspect IMG | head -1`): exit quietly with
        // the status of a process ended by SIGPIPE, as other Unix tools do.
        Err(e) if e.chain().any(|c| c.is::<output::StdoutClosed>()) => ExitCode::from(128 + 13),
        Err(e) => {
            eprintln!("aero-host: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
