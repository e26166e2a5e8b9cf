//! `residency-router`: run, validate, demo.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use residency_router::logging::{self, LogFormat};

/// An HTTP edge proxy that keeps every tenant's traffic inside its data-residency region.
#[derive(Parser)]
#[command(name = "residency-router", version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level filter (`RUST_LOG` overrides it), e.g. `info` or `residency_router=debug`.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router with a config file until SIGTERM/SIGINT (which drain in-flight requests).
    Run {
        /// Path to router.toml.
        #[arg(long)]
        config: PathBuf,
        /// Take over the listeners of the router running with this config: start this
        /// process, then send SIGQUIT to the old one. No connection is refused in between.
        #[arg(long)]
        upgrade: bool,
    },
    /// Check a config file and the registry it names; print every problem; exit 0 or 1.
    Validate {
        /// Path to router.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask the running router to reload its config and registry (through
    /// `[server] control_socket`). The files are validated here first.
    Reload {
        /// Path to router.toml.
        #[arg(long)]
        config: PathBuf,
        /// Apply even when more tenants change home region than `reload.max_moved_percent`.
        #[arg(long)]
        force: bool,
    },
    /// Start four demo site backends and the router, and print curl commands to try.
    Demo {
        /// Where the demo router listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Run { config, upgrade } => match config::load(&config) {
            Ok(snapshot) => {
                residency_router::server::run(snapshot, upgrade);
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {errors}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Validate { config } => match config::load(&config) {
            Ok(snapshot) => {
                println!(
                    "{}: ok ({} regions, {} sites, {} backends, {} tenants)",
                    config.display(),
                    snapshot.topology.regions().len(),
                    snapshot.topology.sites().len(),
                    snapshot.backend_count(),
                    snapshot.registry.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {errors}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Reload { config, force } => reload(&config, force),
        Command::Demo { listen } => match residency_router::demo::run(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn reload(config: &std::path::Path, force: bool) -> ExitCode {
    let snapshot = match config::load(config) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            eprintln!("{}: {errors}", config.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(socket) = snapshot.server.control_socket else {
        eprintln!(
            "{}: no [server] control_socket is configured; set one, or send SIGHUP to the router",
            config.display()
        );
        return ExitCode::FAILURE;
    };
    match residency_router::reload::request_reload(&socket, force) {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).expect("answers serialize")
            );
            if answer.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cannot reach the router at {}: {e}", socket.display());
            ExitCode::FAILURE
        }
    }
}
