//! Attempt policy: what a failed backend attempt means for the request (try again, and where),
//! for the backend (blame it or not) and for the client (the answer when nothing more is
//! tried).
//!
//! Pure: the Pingora hooks in [`crate::proxy`] read the facts off Pingora's error and session,
//! ask [`judge`], and act on the [`Verdict`] (metrics, passive health, Pingora's retry flag).
//! [`Attempts`] is what the policy remembers between hooks for one request.
//!
//! A retry here only asks Pingora to call `upstream_peer` again. The attempt budget and the
//! live configuration are judged there ([`Attempts::may_start`]), so a retry asked for with the
//! budget spent ends with the last failure's answer ([`Attempts::none_left`]), not with the
//! error of the attempt itself: a TLS failure on the last attempt is a 503, not a 502.

use pingora::{Error, ErrorType};
use regions::BlockCode;
use smallvec::SmallVec;

use crate::metrics::UpstreamError;
use crate::respond::ErrorCode;

/// What Pingora's error type means to the policy. The classes are disjoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    ConnectTimeout,
    /// Refused, no route, a socket error: the backend never got the request.
    Connect,
    /// A read or write timed out on an established connection.
    Timeout,
    /// The TLS handshake failed (see [`crate::tls::is_handshake_failure`]).
    Tls,
    /// The peer went away: a read or write error, or the connection closed.
    Lost,
    /// An HTTP status as an error: the router's own "no allowed backend left".
    Status,
    Other,
}

pub(crate) fn classify(e: &Error) -> ErrorClass {
    match e.etype() {
        ErrorType::ConnectTimedout => ErrorClass::ConnectTimeout,
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::SocketError => ErrorClass::Connect,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => ErrorClass::Timeout,
        ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
            ErrorClass::Lost
        }
        ErrorType::HTTPStatus(_) => ErrorClass::Status,
        _ if crate::tls::is_handshake_failure(e) => ErrorClass::Tls,
        _ => ErrorClass::Other,
    }
}

/// How one attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connecting failed (refused, no route, or anything else but a timeout or TLS).
    Connect,
    ConnectTimeout,
    Tls,
    /// The backend had the connection and went quiet past a read or write timeout.
    /// `request_sent`: the client's whole request had been read, so the backend had all of it.
    Timeout {
        request_sent: bool,
    },
    /// The connection broke (reset, closed) or the backend spoke invalid HTTP.
    Broken,
    /// The backend answered with a 5xx status.
    Status5xx,
    /// The error is not the backend's: the client's side, or the router's own.
    NotUpstream,
}

impl Failure {
    /// A failure reported by `fail_to_connect`: whatever the error, nothing reached the backend.
    pub(crate) fn connecting(class: ErrorClass) -> Failure {
        match class {
            ErrorClass::ConnectTimeout | ErrorClass::Timeout => Failure::ConnectTimeout,
            ErrorClass::Tls => Failure::Tls,
            _ => Failure::Connect,
        }
    }

    /// A failure reported by `error_while_proxy`. `body_done` is asked only for a timeout
    /// before the response started: after it [`judge`] does not read it, and asking makes
    /// Pingora set up its body reader.
    pub(crate) fn proxying(
        class: ErrorClass,
        upstream: bool,
        response_started: bool,
        body_done: impl FnOnce() -> bool,
    ) -> Failure {
        match class {
            _ if !upstream => Failure::NotUpstream,
            ErrorClass::ConnectTimeout | ErrorClass::Timeout => Failure::Timeout {
                request_sent: !response_started && body_done(),
            },
            _ => Failure::Broken,
        }
    }
}

/// The facts about the request and the failed attempt that the verdict depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttemptFacts {
    /// Sending the request twice is harmless (RFC 9110 9.2.2).
    pub idempotent: bool,
    /// Pingora kept the whole body for a resend (its retry buffer was not truncated).
    pub body_replayable: bool,
    /// Response headers went downstream: the client already has part of an answer.
    pub response_started: bool,
    /// The attempt ran on a pooled connection rather than a fresh one.
    pub reused: bool,
    /// Pingora marked the error as one a new connection cures (an h2 GOAWAY, a downgrade to
    /// HTTP/1.1), its "reused connections only" marks resolved for this connection.
    pub pingora_retry: bool,
    /// An earlier attempt of this request broke a fresh connection and was blamed for it.
    pub broke_a_backend: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The error is final (or, for a 5xx, the response goes to the client as it is).
    Stop,
    /// Another allowed backend: the attempt counts toward `proxy.max_attempts` and its backend
    /// is not picked again.
    Elsewhere,
    /// The connection's fault, not the backend's: the attempt is forgotten, neither counted
    /// nor avoided, so the request may go to the same backend on a new connection.
    Again,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blame {
    /// Says nothing about the backend's health.
    Nobody,
    /// One more failure toward the backend's passive ejection.
    Backend,
    /// As `Backend`, for a fresh connection broken: a request that breaks two backends may be
    /// what breaks them, so a second break of this request is not blamed.
    FirstBreak,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub retry: Retry,
    pub blame: Blame,
    /// For `residency_upstream_errors_total`.
    pub count: Option<UpstreamError>,
    /// What the client is told if no later attempt answers; `None` keeps the earlier answer.
    pub report: Option<ErrorCode>,
}

/// The verdict on one failed attempt.
pub(crate) fn judge(failure: Failure, facts: AttemptFacts) -> Verdict {
    // Another copy of the request is harmless only if the method allows it and the client has
    // not started to receive an answer (a second one cannot be spliced in).
    let replayable = !facts.response_started && facts.idempotent && facts.body_replayable;
    let connect = |count| Verdict {
        // Nothing reached the backend, so any method may go to the next allowed backend.
        retry: Retry::Elsewhere,
        blame: Blame::Backend,
        count: Some(count),
        report: Some(ErrorCode::Block(BlockCode::RegionUnavailable)),
    };
    match failure {
        Failure::Connect => connect(UpstreamError::Connect),
        Failure::ConnectTimeout => connect(UpstreamError::Timeout),
        Failure::Tls => connect(UpstreamError::Tls),
        Failure::Timeout { request_sent } => {
            // Blame the backend only when it had the whole request and still kept quiet. A
            // client that stalls its upload, or an idle stream after the response started,
            // says nothing about the backend's health.
            let stalled = !facts.response_started && request_sent;
            Verdict {
                retry: if replayable && stalled {
                    Retry::Elsewhere
                } else {
                    Retry::Stop
                },
                blame: if stalled {
                    Blame::Backend
                } else {
                    Blame::Nobody
                },
                count: Some(UpstreamError::Timeout),
                report: Some(ErrorCode::UpstreamTimeout),
            }
        }
        Failure::Broken => {
            // A break of a reused connection (usually a pooled one the backend had closed), and
            // what Pingora retries by itself, are faults of the connection: the backend gets
            // the request again on a new connection, so the retry does not skip ahead to
            // another site or a replica region. A fresh connection broken is the backend's
            // fault: it died or is dying, so the next allowed backend gets the request.
            let connection_fault = facts.reused || facts.pingora_retry;
            let blamed = !connection_fault && !facts.broke_a_backend;
            Verdict {
                retry: match (replayable, connection_fault, blamed) {
                    (false, _, _) => Retry::Stop,
                    (true, true, _) => Retry::Again,
                    (true, false, true) => Retry::Elsewhere,
                    (true, false, false) => Retry::Stop,
                },
                blame: if blamed {
                    Blame::FirstBreak
                } else {
                    Blame::Nobody
                },
                count: (!connection_fault).then_some(UpstreamError::Reset),
                report: Some(ErrorCode::UpstreamError),
            }
        }
        // Outlier detection counts 5xx answers; the answer itself goes to the client.
        Failure::Status5xx => Verdict {
            retry: Retry::Stop,
            blame: Blame::Backend,
            count: Some(UpstreamError::Status5xx),
            report: None,
        },
        Failure::NotUpstream => Verdict {
            retry: Retry::Stop,
            blame: Blame::Nobody,
            count: None,
            report: Some(ErrorCode::UpstreamError),
        },
    }
}

/// One backend attempt: the index into the route's sites and the backend inside that site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub route_index: usize,
    pub backend: usize,
}

/// The error `fail_to_proxy` got, and what the request had reached by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FinalError {
    pub class: ErrorClass,
    /// Pingora's `ErrorSource::Downstream`: the client's side failed.
    pub downstream: bool,
    pub response_started: bool,
    /// The request got a route.
    pub routed: bool,
}

/// One request's attempts, and what the policy remembers between hooks.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    tried: SmallVec<[Attempt; 8]>,
    /// The answer of the last failed attempt, for when `max_attempts` runs out while allowed
    /// backends remain untried.
    last_failure: Option<ErrorCode>,
    broke_a_backend: bool,
    /// Every allowed backend was tried or is cooling down (or the live configuration no
    /// longer routes the request as it did).
    exhausted: bool,
}

impl Attempts {
    /// Attempts counted toward `max_attempts`.
    pub(crate) fn made(&self) -> usize {
        self.tried.len()
    }

    pub(crate) fn has_tried(&self, attempt: Attempt) -> bool {
        self.tried.contains(&attempt)
    }

    pub(crate) fn broke_a_backend(&self) -> bool {
        self.broke_a_backend
    }

    /// Whether another attempt may start. A retry also needs the live configuration to route
    /// the request as its own did (`unchanged`), asked only for retries: it costs a load.
    pub(crate) fn may_start(&self, max_attempts: u32, unchanged: impl FnOnce() -> bool) -> bool {
        let made = self.tried.len();
        made < max_attempts as usize && (made == 0 || unchanged())
    }

    /// Records a started attempt; returns whether it is a retry.
    pub(crate) fn start(&mut self, attempt: Attempt) -> bool {
        let retry = !self.tried.is_empty();
        self.tried.push(attempt);
        retry
    }

    /// No backend could be picked. The client hears what the last attempt met if the budget ran
    /// out; otherwise the route is spent, and that is `region_unavailable`.
    pub(crate) fn none_left(&mut self, max_attempts: u32) {
        let budget_spent = self.tried.len() >= max_attempts as usize;
        self.exhausted = !budget_spent || self.last_failure.is_none();
    }

    /// Remembers what a verdict means for the attempts that follow.
    pub(crate) fn apply(&mut self, verdict: &Verdict) {
        if let Some(code) = verdict.report {
            self.last_failure = Some(code);
        }
        if verdict.blame == Blame::FirstBreak {
            self.broke_a_backend = true;
        }
        if verdict.retry == Retry::Again {
            self.tried.pop();
        }
    }

    /// The router's answer to a request that failed for good; `None` when nothing useful can
    /// be sent (the client is gone, or a response is half-written).
    pub(crate) fn answer(&self, error: FinalError) -> Option<ErrorCode> {
        if error.response_started || (error.downstream && error.class == ErrorClass::Lost) {
            return None;
        }
        Some(if error.downstream || !error.routed {
            // The request itself could not be read or handled (e.g. a malformed body).
            ErrorCode::Block(BlockCode::BadRequest)
        } else if self.exhausted
            || matches!(
                error.class,
                ErrorClass::ConnectTimeout | ErrorClass::Connect
            )
        {
            ErrorCode::Block(BlockCode::RegionUnavailable)
        } else if let (Some(last), ErrorClass::Status) = (self.last_failure, error.class) {
            // The attempt budget ran out: report what the last attempt met.
            last
        } else if error.class == ErrorClass::Timeout {
            ErrorCode::UpstreamTimeout
        } else {
            ErrorCode::UpstreamError
        })
    }
}

#[cfg(test)]
mod tests;
