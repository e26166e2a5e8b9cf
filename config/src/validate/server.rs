//! The small process-level tables: `[server]`, `[reload]` and `[access_log]`.

use std::path::Path;
use std::time::Duration;

use crate::error::code;
use crate::file::{AccessLogFile, ReloadFile, ServerFile};
use crate::snapshot::{AccessLogSettings, ReloadSettings, ServerSettings};

use super::{millis, positive, relative_to, Problems};

pub(super) fn server_settings(
    file: &ServerFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> ServerSettings {
    let d = ServerSettings::default();
    ServerSettings {
        threads: positive(
            file.threads,
            d.threads,
            "server.threads",
            "omit it to use one thread per core",
            problems,
        ),
        shutdown_grace: file
            .shutdown_grace_seconds
            .map_or(d.shutdown_grace, Duration::from_secs),
        control_socket: file
            .control_socket
            .as_ref()
            .map(|p| relative_to(config_path, p)),
        upgrade_socket: file
            .upgrade_socket
            .as_ref()
            .map_or(d.upgrade_socket, |p| relative_to(config_path, p)),
    }
}

pub(super) fn reload_settings(file: &ReloadFile, problems: &mut Problems<'_>) -> ReloadSettings {
    let d = ReloadSettings::default();
    let max_moved_percent = match file.max_moved_percent {
        Some(p) if p > 100 => {
            problems.add(
                code::OUT_OF_RANGE,
                "reload.max_moved_percent",
                format!("{p}% is more than every tenant"),
                "use 0 to 100",
            );
            d.max_moved_percent
        }
        Some(p) => p,
        None => d.max_moved_percent,
    };
    ReloadSettings {
        watch: file.watch.unwrap_or(d.watch),
        watch_interval: millis(
            file.watch_interval_ms,
            d.watch_interval,
            "reload.watch_interval_ms",
            problems,
        ),
        max_moved_percent,
        always_allowed_moves: file.always_allowed_moves.unwrap_or(d.always_allowed_moves),
    }
}

pub(super) fn access_log_settings(
    log: &AccessLogFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> AccessLogSettings {
    let fix = "records held before dropping: 1 to 1000000, e.g. 8192";
    let mut buffer_records = positive(
        log.buffer_records,
        8192,
        "access_log.buffer_records",
        fix,
        problems,
    );
    if buffer_records > 1_000_000 {
        problems.add(
            code::OUT_OF_RANGE,
            "access_log.buffer_records",
            format!("{buffer_records} records would be allocated up front"),
            fix,
        );
        buffer_records = 8192;
    }
    AccessLogSettings {
        file: (log.path != "-").then(|| relative_to(config_path, &log.path)),
        buffer_records,
    }
}
