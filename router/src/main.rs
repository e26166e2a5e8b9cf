//! `residency-router`: run, validate, demo, reload, audit, registry, token and probe.

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
    /// Fleet mode: move a registry file into the etcd store the config names, and back.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Admin API bearer tokens: the config stores only their SHA-256.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// GET a plain-HTTP URL and exit 0 on a 2xx answer, 1 otherwise: the container image's
    /// health check (`probe http://127.0.0.1:9901/livez`), which has no curl.
    Probe {
        /// e.g. http://127.0.0.1:9901/livez
        url: String,
        /// Connect, send and answer each within this.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Start four demo site backends and the router, and print curl commands to try.
    Demo {
        /// Where the demo router listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo's admin API listens.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Fleet mode: a 3-member etcd cluster on loopback and two routers sharing its
        /// registry, the "us edge" on --listen / --admin and the "eu edge" on
        /// --eu-listen / --eu-admin. Needs the `etcd` and `etcdctl` binaries.
        #[arg(long)]
        fleet: bool,
        #[arg(long, default_value = "127.0.0.1:8081")]
        eu_listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9902")]
        eu_admin: SocketAddr,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit log files and report the first broken entry; exit 0 or 1.
    /// Give rotated files oldest first, then the live one: `audit verify audit.log.* audit.log`.
    /// With `--config` naming an etcd registry, checks the fleet's chain in etcd instead.
    Verify {
        /// Fleet mode: the config whose etcd holds the chain.
        #[arg(long, conflicts_with = "files")]
        config: Option<PathBuf>,
        #[arg(required_unless_present = "config")]
        files: Vec<PathBuf>,
    },
    /// Fleet mode: write the fleet's audit chain from etcd to a file (`audit verify FILE`
    /// checks it; keep it for as long as audits need it).
    Export {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Load a registry file (`{"tenants": [...]}`) into the store: every tenant is written
    /// (created or replaced), in transactions under etcd's limits, each audited. Tenants the
    /// store holds that the file does not list are left alone.
    Import {
        #[arg(long)]
        config: PathBuf,
        file: PathBuf,
    },
    /// Print the store's registry as a registry file, read at one revision.
    Export {
        #[arg(long)]
        config: PathBuf,
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
            Ok(snapshot) => {
                let upgrade_socket = snapshot.server.upgrade_socket.clone();
                let launch = residency_router::server::Launch::process(upgrade, upgrade_socket);
                match residency_router::server::run(snapshot, launch) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("{}: {e}", config.display());
                        ExitCode::FAILURE
                    }
                }
            }
            Err(errors) => {
                eprintln!("{}: {errors}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Validate { config } => match residency_config::load(&config) {
            Ok(snapshot) => {
                let registry = match &snapshot.etcd {
                    None => format!("{} tenants", snapshot.registry.len()),
                    Some(etcd) => format!(
                        "registry in etcd under {} ({} endpoints; not contacted)",
                        etcd.prefix,
                        etcd.endpoints.len()
                    ),
                };
                println!(
                    "{}: ok ({} regions, {} sites, {} backends, {registry})",
                    config.display(),
                    snapshot.topology.regions().len(),
                    snapshot.topology.sites().len(),
                    snapshot.backend_count(),
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
            command:
                AuditCommand::Verify {
                    config: None,
                    files,
                },
        } => audit_verify(&files),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config: Some(config),
                    ..
                },
        } => fleet_audit(&config, None),
        Command::Audit {
            command: AuditCommand::Export { config, out },
        } => fleet_audit(&config, Some(&out)),
        Command::Registry { command } => registry(command),
        Command::Token { command } => token(command),
        Command::Probe { url, timeout_ms } => {
            match residency_router::probe::get(&url, std::time::Duration::from_millis(timeout_ms)) {
                Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("{url}: {status}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            listen,
            admin,
            fleet,
            eu_listen,
            eu_admin,
        } => match if fleet {
            residency_router::demo::run_fleet((listen, admin), (eu_listen, eu_admin))
        } else {
            residency_router::demo::run(listen, admin)
        } {
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

/// The etcd settings of a config, or why not.
fn etcd_of(
    config: &std::path::Path,
) -> Result<
    (
        residency_config::Snapshot,
        std::sync::Arc<residency_config::EtcdSettings>,
    ),
    String,
> {
    let snapshot = residency_config::load(config)
        .map_err(|errors| format!("{}: {errors}", config.display()))?;
    let etcd = snapshot.etcd.clone().ok_or_else(|| {
        format!(
            "{}: tenancy.registry is a file, not an etcd store; these commands are for fleet mode",
            config.display()
        )
    })?;
    Ok((snapshot, etcd))
}

fn registry(command: RegistryCommand) -> ExitCode {
    let result: Result<(), String> = match command {
        RegistryCommand::Import { config, file } => (|| {
            let (snapshot, etcd) = etcd_of(&config)?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let registry = residency_config::registry_from_text(&file, &text, &snapshot.topology)
                .map_err(|errors| format!("{}: {errors}", file.display()))?;
            let tenants: Vec<(String, Vec<u8>)> = registry
                .sorted()
                .iter()
                .map(|(id, record)| {
                    (
                        id.to_string(),
                        residency_config::tenant_json(id, record, &snapshot.topology),
                    )
                })
                .collect();
            let actor = format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            );
            let revision = residency_fleet::import_registry(&etcd, &tenants, &actor)
                .map_err(|e| e.to_string())?;
            println!(
                "imported {} tenants into {} (revision {revision})",
                tenants.len(),
                etcd.prefix
            );
            Ok(())
        })(),
        RegistryCommand::Export { config } => (|| {
            let (snapshot, etcd) = etcd_of(&config)?;
            let (revision, tenants) =
                residency_fleet::export_registry(&etcd).map_err(|e| e.to_string())?;
            let text = tenants
                .iter()
                .map(|(_, json)| String::from_utf8_lossy(json).into_owned())
                .collect::<Vec<_>>()
                .join(",\n  ");
            // Checked as a registry file is, so what is printed can be imported again.
            let document = format!("{{ \"tenants\": [\n  {text}\n] }}\n");
            if let Err(errors) = residency_config::registry_from_text(
                std::path::Path::new("(etcd)"),
                &document,
                &snapshot.topology,
            ) {
                eprintln!("warning: the store holds records this config cannot use: {errors}");
            }
            print!("{document}");
            eprintln!(
                "exported {} tenants from {} at revision {revision}",
                tenants.len(),
                etcd.prefix
            );
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `audit verify --config` (out: `None`) or `audit export` of the fleet's chain in etcd.
fn fleet_audit(config: &std::path::Path, out: Option<&std::path::Path>) -> ExitCode {
    let residency_fleet::ExportedAudit {
        lines,
        head: (head_seq, head_hash),
    } = match etcd_of(config)
        .and_then(|(_, etcd)| residency_fleet::export_audit(&etcd).map_err(|e| e.to_string()))
    {
        Ok(exported) => exported,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = Vec::new();
    for line in &lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    // Verified from a file, as `audit verify FILE` does: the very same checks.
    let temporary = match out {
        Some(_) => None,
        None => match tempfile::NamedTempFile::new() {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("cannot make a temporary file: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let path = out.unwrap_or_else(|| temporary.as_ref().expect("made above").path());
    if let Err(e) = std::fs::write(path, &text) {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Some(path) = out {
        eprintln!("wrote {} entries to {}", lines.len(), path.display());
    }
    match residency_admin::audit::verify(&[path.to_owned()]) {
        Ok(_) if lines.is_empty() && head_seq == 0 => {
            println!("ok: the fleet's audit chain is empty");
            ExitCode::SUCCESS
        }
        Ok(v) if v.last_seq == head_seq && v.head == head_hash => audit_verify(&[path.to_owned()]),
        Ok(v) => {
            eprintln!(
                "broken: the chain in etcd ends at seq {} ({}), but its head says seq {head_seq} ({head_hash}): entries are missing from its end",
                v.last_seq, v.head
            );
            ExitCode::FAILURE
        }
        Err(_) => audit_verify(&[path.to_owned()]),
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
