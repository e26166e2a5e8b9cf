//! `[listen]`: the client, admin and metrics addresses.

use crate::error::code;
use crate::file::ConfigFile;
use crate::snapshot::Listen;

use super::{socket_addr, Problems};

pub(super) fn listen(file: &ConfigFile, problems: &mut Problems<'_>) -> Option<Listen> {
    let listen = &file.listen;
    if listen.http.is_none() && listen.https.is_none() {
        problems.add(
            code::MISSING_SETTING,
            "listen",
            "no listener for client traffic",
            "set listen.http (plain HTTP), listen.https (TLS), or both",
        );
    }
    let h2c = listen.h2c.unwrap_or(false);
    if h2c && listen.http.is_none() {
        problems.add(
            code::MISSING_SETTING,
            "listen.h2c",
            "h2c is served on listen.http, which is not set",
            "set listen.http, or remove h2c",
        );
    }
    let mut optional = |value: &Option<String>, at: &str| {
        value.as_deref().and_then(|v| socket_addr(v, at, problems))
    };
    Some(Listen {
        http: optional(&listen.http, "listen.http"),
        https: optional(&listen.https, "listen.https"),
        admin: optional(&listen.admin, "listen.admin"),
        metrics: optional(&listen.metrics, "listen.metrics"),
        h2c,
    })
}
