//! `residency-router`: run, validate, demo, reload, audit verify, token new and token hash.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use residency_router::logging::{self, LogFormat};

/// mimalloc's per-thread free lists suit a proxy's many small, short-lived allocations (header
/// maps, buffers, futures): see docs/performance.md for what it bought.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Admin API audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Admin API bearer tokens: the config stores only their SHA-256.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Start four demo site backends and the router, and print curl commands to try.
    Demo {
        /// Where the demo router listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo's admin API listens.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit log files and report the first broken entry; exit 0 or 1.
    /// Give rotated files oldest first, then the live one: `audit verify audit.log.* audit.log`.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate a random token; print it once, with the `[[admin.tokens]]` entry for the config.
    New {
        #[arg(long)]
        name: String,
        /// operator, tenant-admin, auditor or viewer.
        #[arg(long)]
        role: String,
        /// For tenant-admin: a tenant it manages (repeat for several).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// Print the SHA-256 of a token read from standard input.
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Run { config, upgrade } => match residency_config::load(&config) {
            Ok(snapshot) => match residency_router::server::run(
                snapshot,
                residency_router::server::Launch::process(upgrade),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    ExitCode::FAILURE
                }
            },
            Err(errors) => {
                eprintln!("{}: {errors}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Validate { config } => match residency_config::load(&config) {
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
        Command::Audit {
            command: AuditCommand::Verify { files },
        } => audit_verify(&files),
        Command::Token { command } => token(command),
        Command::Demo { listen, admin } => match residency_router::demo::run(listen, admin) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn reload(config: &std::path::Path, force: bool) -> ExitCode {
    let snapshot = match residency_config::load(config) {
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

fn audit_verify(files: &[PathBuf]) -> ExitCode {
    use residency_admin::audit::{verify, GENESIS};
    match verify(files) {
        Ok(v) => {
            let start = if v.starts_after == GENESIS {
                "the start of the chain".to_owned()
            } else {
                format!("hash {} (a rotated file before these)", v.starts_after)
            };
            println!(
                "ok: {} entries, seq {}..{}, continuing from {start}; head {}",
                v.entries, v.first_seq, v.last_seq, v.head
            );
            ExitCode::SUCCESS
        }
        Err(broken) => {
            eprintln!("broken: {broken}");
            ExitCode::FAILURE
        }
    }
}

fn token(command: TokenCommand) -> ExitCode {
    use residency_admin::auth::token_hash;
    match command {
        TokenCommand::Hash => {
            let mut token = String::new();
            if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
                eprintln!("write the token on standard input");
                return ExitCode::FAILURE;
            }
            println!("{}", token_hash(&token));
            ExitCode::SUCCESS
        }
        TokenCommand::New {
            name,
            role,
            tenants,
        } => {
            if !residency_config::Role::ALL
                .iter()
                .any(|r| r.as_str() == role)
            {
                eprintln!("unknown role `{role}`; use operator, tenant-admin, auditor or viewer");
                return ExitCode::FAILURE;
            }
            let mut bytes = [0u8; 32];
            if let Err(e) = getrandom::fill(&mut bytes) {
                eprintln!("no randomness available: {e}");
                return ExitCode::FAILURE;
            }
            let token = format!("rr_{}", hex::encode(bytes));
            let scope = if tenants.is_empty() {
                String::new()
            } else {
                format!("tenants = {tenants:?}\n")
            };
            eprintln!("The token (shown once; give it to {name}):");
            println!("{token}");
            eprintln!(
                "\nAdd to the config (it holds only the hash):\n\n[[admin.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\n{scope}sha256 = \"{}\"",
                token_hash(&token)
            );
            ExitCode::SUCCESS
        }
    }
}
