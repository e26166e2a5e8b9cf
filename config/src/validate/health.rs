//! `[health]` and `[regions.sites.health]`: active checks and passive ejection.

use crate::error::code;
use crate::file::{CheckFile, HealthFile};
use crate::snapshot::{ActiveCheck, HealthSettings, HttpCheck, OutlierSettings};

use super::{millis, positive, Problems};

/// Applies `overrides` on top of `base`, checking every field it sets and the combination.
pub(super) fn health(
    base: &HealthSettings,
    overrides: &HealthFile,
    at: &str,
    problems: &mut Problems<'_>,
) -> HealthSettings {
    let o = overrides;
    let field = |name: &str| format!("{at}.{name}");
    let mut h = base.clone();
    if let Some(check) = o.check {
        h.check = match (check, &base.check) {
            (CheckFile::None, _) => ActiveCheck::Disabled,
            (CheckFile::Tcp, _) => ActiveCheck::Tcp,
            (CheckFile::Http, ActiveCheck::Http(inherited)) => ActiveCheck::Http(inherited.clone()),
            (CheckFile::Http, _) => ActiveCheck::Http(HttpCheck {
                method: "GET".into(),
                path: HttpCheck::DEFAULT_PATH.into(),
                host: HttpCheck::DEFAULT_HOST.into(),
                expect_status: 200..=399,
            }),
        };
    }
    let sets_http = o.http_method.is_some()
        || o.http_path.is_some()
        || o.http_host.is_some()
        || o.http_expect_status.is_some();
    match &mut h.check {
        ActiveCheck::Http(http) => {
            if let Some(method) = &o.http_method {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    problems.add(
                        code::INVALID_VALUE,
                        field("http_method"),
                        format!("`{method}` is not an HTTP method"),
                        "write e.g. `GET` or `HEAD`",
                    );
                } else {
                    http.method = method.clone();
                }
            }
            if let Some(path) = &o.http_path {
                let parses = path.len() <= 4096 && path.parse::<http::uri::PathAndQuery>().is_ok();
                if !path.starts_with('/') || !parses {
                    problems.add(
                        code::INVALID_VALUE,
                        field("http_path"),
                        format!("`{path}` is not a request path"),
                        "write a path starting with `/`, e.g. `/healthz`",
                    );
                } else {
                    http.path = path.clone();
                }
            }
            if let Some(host) = &o.http_host {
                if http::HeaderValue::from_str(host).is_err() || host.is_empty() {
                    problems.add(
                        code::INVALID_VALUE,
                        field("http_host"),
                        format!("`{host}` cannot be a Host header"),
                        "write a host name such as `health.internal`",
                    );
                } else {
                    http.host = host.clone();
                }
            }
            if let Some(range) = &o.http_expect_status {
                match range.as_slice() {
                    [min, max] if (100..=599).contains(min) && min <= max && *max <= 599 => {
                        http.expect_status = *min..=*max;
                    }
                    _ => problems.add(
                        code::INVALID_VALUE,
                        field("http_expect_status"),
                        format!("{range:?} is not a status range"),
                        "write `[min, max]` within 100..=599, e.g. `[200, 399]`",
                    ),
                }
            }
        }
        _ if sets_http => problems.add(
            code::CONFLICTING_SETTINGS,
            field("check"),
            "http_* settings are set but the check is not `http`",
            "set `check = \"http\"`, or remove the http_* settings",
        ),
        _ => {}
    }
    h.interval = millis(
        o.interval_ms,
        base.interval,
        &field("interval_ms"),
        problems,
    );
    h.timeout = millis(o.timeout_ms, base.timeout, &field("timeout_ms"), problems);
    let threshold_fix = "1 flips on the first result";
    h.healthy_threshold = positive(
        o.healthy_threshold,
        base.healthy_threshold,
        &field("healthy_threshold"),
        threshold_fix,
        problems,
    );
    h.unhealthy_threshold = positive(
        o.unhealthy_threshold,
        base.unhealthy_threshold,
        &field("unhealthy_threshold"),
        threshold_fix,
        problems,
    );
    h.start_unhealthy = o.start_unhealthy.unwrap_or(base.start_unhealthy);
    let b = &base.outlier;
    h.outlier = OutlierSettings {
        eject_after_failures: positive(
            o.eject_after_failures,
            b.eject_after_failures,
            &field("eject_after_failures"),
            "1 ejects on the first failure",
            problems,
        ),
        base_ejection: millis(
            o.base_ejection_ms,
            b.base_ejection,
            &field("base_ejection_ms"),
            problems,
        ),
        max_ejection: millis(
            o.max_ejection_ms,
            b.max_ejection,
            &field("max_ejection_ms"),
            problems,
        ),
        max_ejected_percent: match o.max_ejected_percent {
            Some(p) if p > 100 => {
                problems.add(
                    code::OUT_OF_RANGE,
                    field("max_ejected_percent"),
                    format!("{p}% is more than all backends"),
                    "use 0 to 100 (0 turns passive ejection off)",
                );
                b.max_ejected_percent
            }
            Some(p) => p,
            None => b.max_ejected_percent,
        },
    };
    if h.start_unhealthy && h.check == ActiveCheck::Disabled {
        problems.add(
            code::CONFLICTING_SETTINGS,
            field("start_unhealthy"),
            "backends would wait forever for a check that never runs",
            "turn on a check (`check = \"tcp\"` or `\"http\"`), or set `start_unhealthy = false`",
        );
    }
    if h.timeout > h.interval {
        problems.add(
            code::CONFLICTING_SETTINGS,
            field("timeout_ms"),
            format!(
                "the check timeout ({:?}) is longer than its interval ({:?})",
                h.timeout, h.interval
            ),
            "make timeout_ms at most interval_ms",
        );
    }
    if h.outlier.base_ejection > h.outlier.max_ejection {
        problems.add(
            code::CONFLICTING_SETTINGS,
            field("base_ejection_ms"),
            "the first ejection is longer than the longest one",
            "make base_ejection_ms at most max_ejection_ms",
        );
    }
    h
}
