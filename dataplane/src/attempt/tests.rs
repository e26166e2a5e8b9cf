use pingora::{Error, ErrorSource, ErrorType};
use proptest::prelude::*;
use regions::BlockCode;

use super::*;
use crate::metrics::UpstreamError as U;
use crate::respond::ErrorCode;

/// A failed attempt as Pingora reports it, and to which hook.
#[derive(Clone, Copy, Debug)]
enum Case {
    Refused,
    ConnectTimeout,
    TlsHandshake,
    /// Read timeout with the whole request sent.
    ReadTimeout,
    /// Read timeout while the client was still uploading.
    UploadStalled,
    /// The backend closed the connection before any answer.
    Reset,
    /// The backend answered with something that is not HTTP.
    Garbled,
    Status5xx,
    /// The client closed its connection.
    ClientGone,
    /// The client sent a malformed body.
    ClientMalformed,
    /// A router filter failed.
    RouterFault,
}

enum Hook {
    FailToConnect,
    ErrorWhileProxy,
    UpstreamResponse,
}

impl Case {
    fn error(self) -> Box<Error> {
        match self {
            Case::Refused => Error::new_up(ErrorType::ConnectRefused),
            Case::ConnectTimeout => Error::new_up(ErrorType::ConnectTimedout),
            Case::TlsHandshake => Error::new_up(ErrorType::TLSHandshakeFailure),
            Case::ReadTimeout | Case::UploadStalled => Error::new_up(ErrorType::ReadTimedout),
            Case::Reset => Error::new_up(ErrorType::ConnectionClosed),
            Case::Garbled => Error::new_up(ErrorType::InvalidHTTPHeader),
            Case::Status5xx => Error::new_up(ErrorType::HTTPStatus(502)),
            Case::ClientGone => Error::new_down(ErrorType::ReadError),
            Case::ClientMalformed => Error::new_down(ErrorType::InvalidHTTPHeader),
            Case::RouterFault => Error::new_in(ErrorType::InternalError),
        }
    }

    fn hook(self) -> Hook {
        match self {
            Case::Refused | Case::ConnectTimeout | Case::TlsHandshake => Hook::FailToConnect,
            Case::Status5xx => Hook::UpstreamResponse,
            _ => Hook::ErrorWhileProxy,
        }
    }

    /// As the hook reads it.
    fn failure(self, facts: AttemptFacts) -> Failure {
        let e = self.error();
        match self.hook() {
            Hook::FailToConnect => Failure::connecting(classify(&e)),
            Hook::UpstreamResponse => Failure::Status5xx,
            Hook::ErrorWhileProxy => Failure::proxying(
                classify(&e),
                *e.esource() == ErrorSource::Upstream,
                facts.response_started,
                || !matches!(self, Case::UploadStalled),
            ),
        }
    }
}

const GET: AttemptFacts = AttemptFacts {
    idempotent: true,
    body_replayable: true,
    response_started: false,
    reused: false,
    pingora_retry: false,
    broke_a_backend: false,
};

const POST: AttemptFacts = AttemptFacts {
    idempotent: false,
    ..GET
};

/// Spelled as `GET.reused()` in the tables.
impl AttemptFacts {
    const fn reused(self) -> Self {
        AttemptFacts {
            reused: true,
            ..self
        }
    }
    const fn truncated(self) -> Self {
        AttemptFacts {
            body_replayable: false,
            ..self
        }
    }
    const fn started(self) -> Self {
        AttemptFacts {
            response_started: true,
            ..self
        }
    }
    const fn goaway(self) -> Self {
        AttemptFacts {
            pingora_retry: true,
            ..self
        }
    }
    const fn after_a_break(self) -> Self {
        AttemptFacts {
            broke_a_backend: true,
            ..self
        }
    }
}

const MAX: u32 = 3;

/// Attempts counted, this failed one included.
#[derive(Clone, Copy, Debug)]
enum Budget {
    Left,
    Spent,
}
use Budget::{Left, Spent};

impl Budget {
    fn made(self) -> usize {
        match self {
            Left => 1,
            Spent => MAX as usize,
        }
    }
}

/// What happens next, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Another attempt starts (an allowed backend is assumed to be available).
    Tries,
    /// The backend's own (5xx) response goes to the client.
    Relayed,
    Answer(ErrorCode),
    /// Nothing can be sent.
    Silent,
}

const TRIES: Then = Then::Tries;
const UNAVAILABLE: Then = Then::Answer(ErrorCode::Block(BlockCode::RegionUnavailable));
const BAD_GATEWAY: Then = Then::Answer(ErrorCode::UpstreamError);
const GATEWAY_TIMEOUT: Then = Then::Answer(ErrorCode::UpstreamTimeout);
const RELAYED: Then = Then::Relayed;
const SILENT: Then = Then::Silent;
const BAD_REQUEST: Then = Then::Answer(ErrorCode::Block(BlockCode::BadRequest));

/// One failed attempt through the hooks, as proxy.rs wires them: the verdict, and what the
/// client meets next.
fn attempt(case: Case, facts: AttemptFacts, budget: Budget) -> (Verdict, Then) {
    let mut attempts = Attempts {
        broke_a_backend: facts.broke_a_backend,
        ..Attempts::default()
    };
    for backend in 0..budget.made() {
        attempts.start(Attempt {
            route_index: 0,
            backend,
        });
    }
    let verdict = judge(case.failure(facts), facts);
    attempts.apply(&verdict);
    let then = if verdict.retry != Retry::Stop {
        if attempts.may_start(MAX, || true) {
            Then::Tries
        } else {
            // upstream_peer finds the budget spent, and fail_to_proxy gets its error.
            attempts.none_left(MAX);
            let e = Error::explain(ErrorType::HTTPStatus(503), "no allowed backend left");
            final_answer(&attempts, &e, facts)
        }
    } else if matches!(case.hook(), Hook::UpstreamResponse) {
        Then::Relayed
    } else {
        final_answer(&attempts, &case.error(), facts)
    };
    (verdict, then)
}

fn final_answer(attempts: &Attempts, e: &Error, facts: AttemptFacts) -> Then {
    let answer = attempts.answer(FinalError {
        class: classify(e),
        downstream: *e.esource() == ErrorSource::Downstream,
        response_started: facts.response_started,
        routed: true,
    });
    answer.map_or(Then::Silent, Then::Answer)
}

#[test]
fn every_failure_by_method_connection_and_budget() {
    use Blame::{Backend, FirstBreak, Nobody};
    use Case::*;
    use Retry::{Again, Elsewhere, Stop};
    #[rustfmt::skip]
    let table = [
        // Nothing reached the backend: any method goes on, and the backend is blamed. With the
        // budget spent the client hears the last failure, region_unavailable.
        (Refused, GET, Left, Elsewhere, Backend, Some(U::Connect), TRIES),
        (Refused, GET, Spent, Elsewhere, Backend, Some(U::Connect), UNAVAILABLE),
        (Refused, GET.reused(), Left, Elsewhere, Backend, Some(U::Connect), TRIES),
        (Refused, GET.reused(), Spent, Elsewhere, Backend, Some(U::Connect), UNAVAILABLE),
        (Refused, POST, Left, Elsewhere, Backend, Some(U::Connect), TRIES),
        (Refused, POST, Spent, Elsewhere, Backend, Some(U::Connect), UNAVAILABLE),
        (Refused, POST.reused(), Left, Elsewhere, Backend, Some(U::Connect), TRIES),
        (Refused, POST.reused(), Spent, Elsewhere, Backend, Some(U::Connect), UNAVAILABLE),
        (ConnectTimeout, GET, Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        (ConnectTimeout, GET, Spent, Elsewhere, Backend, Some(U::Timeout), UNAVAILABLE),
        (ConnectTimeout, GET.reused(), Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        (ConnectTimeout, GET.reused(), Spent, Elsewhere, Backend, Some(U::Timeout), UNAVAILABLE),
        (ConnectTimeout, POST, Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        (ConnectTimeout, POST, Spent, Elsewhere, Backend, Some(U::Timeout), UNAVAILABLE),
        (ConnectTimeout, POST.reused(), Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        (ConnectTimeout, POST.reused(), Spent, Elsewhere, Backend, Some(U::Timeout), UNAVAILABLE),
        (TlsHandshake, GET, Left, Elsewhere, Backend, Some(U::Tls), TRIES),
        (TlsHandshake, GET, Spent, Elsewhere, Backend, Some(U::Tls), UNAVAILABLE),
        (TlsHandshake, GET.reused(), Left, Elsewhere, Backend, Some(U::Tls), TRIES),
        (TlsHandshake, GET.reused(), Spent, Elsewhere, Backend, Some(U::Tls), UNAVAILABLE),
        (TlsHandshake, POST, Left, Elsewhere, Backend, Some(U::Tls), TRIES),
        (TlsHandshake, POST, Spent, Elsewhere, Backend, Some(U::Tls), UNAVAILABLE),
        (TlsHandshake, POST.reused(), Left, Elsewhere, Backend, Some(U::Tls), TRIES),
        (TlsHandshake, POST.reused(), Spent, Elsewhere, Backend, Some(U::Tls), UNAVAILABLE),
        // A fresh connection broken: the backend's fault. A GET goes on; a POST may have taken
        // effect and gets a 502. A stale pooled connection is the connection's fault: a GET
        // tries again uncounted, so even on the last attempt.
        (Reset, GET, Left, Elsewhere, FirstBreak, Some(U::Reset), TRIES),
        (Reset, GET, Spent, Elsewhere, FirstBreak, Some(U::Reset), BAD_GATEWAY),
        (Reset, GET.reused(), Left, Again, Nobody, None, TRIES),
        (Reset, GET.reused(), Spent, Again, Nobody, None, TRIES),
        (Reset, POST, Left, Stop, FirstBreak, Some(U::Reset), BAD_GATEWAY),
        (Reset, POST, Spent, Stop, FirstBreak, Some(U::Reset), BAD_GATEWAY),
        (Reset, POST.reused(), Left, Stop, Nobody, None, BAD_GATEWAY),
        (Reset, POST.reused(), Spent, Stop, Nobody, None, BAD_GATEWAY),
        // The backend had the whole request and kept quiet: blamed, whatever the connection.
        (ReadTimeout, GET, Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        (ReadTimeout, GET, Spent, Elsewhere, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        (ReadTimeout, GET.reused(), Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        (ReadTimeout, GET.reused(), Spent, Elsewhere, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        (ReadTimeout, POST, Left, Stop, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        (ReadTimeout, POST, Spent, Stop, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        (ReadTimeout, POST.reused(), Left, Stop, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        (ReadTimeout, POST.reused(), Spent, Stop, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        // A 5xx counts against the backend and reaches the client as it is.
        (Status5xx, GET, Left, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, GET, Spent, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, GET.reused(), Left, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, GET.reused(), Spent, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, POST, Left, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, POST, Spent, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, POST.reused(), Left, Stop, Backend, Some(U::Status5xx), RELAYED),
        (Status5xx, POST.reused(), Spent, Stop, Backend, Some(U::Status5xx), RELAYED),
        // Invalid HTTP is a break like a reset.
        (Garbled, GET, Left, Elsewhere, FirstBreak, Some(U::Reset), TRIES),
        (Garbled, GET.reused(), Left, Again, Nobody, None, TRIES),
        (Garbled, POST, Left, Stop, FirstBreak, Some(U::Reset), BAD_GATEWAY),
        // A client stalling its upload says nothing about the backend.
        (UploadStalled, GET, Left, Stop, Nobody, Some(U::Timeout), GATEWAY_TIMEOUT),
        (UploadStalled, POST, Left, Stop, Nobody, Some(U::Timeout), GATEWAY_TIMEOUT),
        // Not the backend's doing: never blamed, never retried.
        (ClientGone, GET, Left, Stop, Nobody, None, SILENT),
        (ClientGone, POST.reused(), Left, Stop, Nobody, None, SILENT),
        (ClientMalformed, POST, Left, Stop, Nobody, None, BAD_REQUEST),
        (RouterFault, GET, Left, Stop, Nobody, None, BAD_GATEWAY),
        // A second fresh break of the same request: counted, not blamed, not retried.
        (Reset, GET.after_a_break(), Left, Stop, Nobody, Some(U::Reset), BAD_GATEWAY),
        (Reset, GET.after_a_break().reused(), Left, Again, Nobody, None, TRIES),
        (ReadTimeout, GET.after_a_break(), Left, Elsewhere, Backend, Some(U::Timeout), TRIES),
        // What Pingora retries by itself (an h2 GOAWAY) is the connection's fault, fresh or not.
        (Reset, GET.goaway(), Left, Again, Nobody, None, TRIES),
        (Reset, GET.goaway(), Spent, Again, Nobody, None, TRIES),
        (Reset, POST.goaway(), Left, Stop, Nobody, None, BAD_GATEWAY),
        // A body too large to keep cannot be sent again.
        (Reset, GET.truncated(), Left, Stop, FirstBreak, Some(U::Reset), BAD_GATEWAY),
        (Reset, GET.truncated().reused(), Left, Stop, Nobody, None, BAD_GATEWAY),
        (ReadTimeout, GET.truncated(), Left, Stop, Backend, Some(U::Timeout), GATEWAY_TIMEOUT),
        // After the response started nothing is retried or answered. A timeout then is an
        // idle stream, not the backend's fault; a fresh connection's break still is.
        (ReadTimeout, GET.started(), Left, Stop, Nobody, Some(U::Timeout), SILENT),
        (Reset, GET.started(), Left, Stop, FirstBreak, Some(U::Reset), SILENT),
        (Reset, GET.started().reused(), Left, Stop, Nobody, None, SILENT),
        (ClientGone, GET.started(), Left, Stop, Nobody, None, SILENT),
    ];
    for (case, facts, budget, retry, blame, count, then) in table {
        let (verdict, next) = attempt(case, facts, budget);
        let row = format!("{case:?} {facts:?} {budget:?}");
        assert_eq!(
            (verdict.retry, verdict.blame, verdict.count),
            (retry, blame, count),
            "{row}"
        );
        assert_eq!(next, then, "{row}");
    }
}

#[test]
fn each_failure_reports_its_own_answer() {
    let unavailable = Some(ErrorCode::Block(BlockCode::RegionUnavailable));
    for (failure, report) in [
        (Failure::Connect, unavailable),
        (Failure::ConnectTimeout, unavailable),
        (Failure::Tls, unavailable),
        (
            Failure::Timeout { request_sent: true },
            Some(ErrorCode::UpstreamTimeout),
        ),
        (
            Failure::Timeout {
                request_sent: false,
            },
            Some(ErrorCode::UpstreamTimeout),
        ),
        (Failure::Broken, Some(ErrorCode::UpstreamError)),
        (Failure::NotUpstream, Some(ErrorCode::UpstreamError)),
        // The 5xx goes to the client: an earlier failure's answer stays.
        (Failure::Status5xx, None),
    ] {
        assert_eq!(judge(failure, GET).report, report, "{failure:?}");
    }
}

#[test]
fn errors_are_classified_as_the_hooks_read_them() {
    use ErrorClass::*;
    for (etype, class) in [
        (ErrorType::ConnectTimedout, ConnectTimeout),
        (ErrorType::ConnectRefused, Connect),
        (ErrorType::ConnectNoRoute, Connect),
        (ErrorType::ConnectError, Connect),
        (ErrorType::SocketError, Connect),
        (ErrorType::ReadTimedout, Timeout),
        (ErrorType::WriteTimedout, Timeout),
        (ErrorType::TLSHandshakeFailure, Tls),
        (ErrorType::InvalidCert, Tls),
        (ErrorType::HandshakeError, Tls),
        (ErrorType::ReadError, Lost),
        (ErrorType::WriteError, Lost),
        (ErrorType::ConnectionClosed, Lost),
        (ErrorType::HTTPStatus(503), Status),
        (ErrorType::InvalidHTTPHeader, Other),
        (ErrorType::H2Error, Other),
        (ErrorType::InternalError, Other),
    ] {
        assert_eq!(classify(&Error::new(etype.clone())), class, "{etype:?}");
    }
    // fail_to_connect: every error there is a connect failure of some kind.
    for (class, failure) in [
        (ConnectTimeout, Failure::ConnectTimeout),
        (Timeout, Failure::ConnectTimeout),
        (Tls, Failure::Tls),
        (Connect, Failure::Connect),
        (Lost, Failure::Connect),
        (Other, Failure::Connect),
    ] {
        assert_eq!(Failure::connecting(class), failure, "{class:?}");
    }
}

#[test]
fn the_body_is_asked_about_only_for_a_timeout_before_the_response() {
    for (class, upstream, started, asked) in [
        (ErrorClass::Timeout, true, false, true),
        (ErrorClass::ConnectTimeout, true, false, true),
        (ErrorClass::Timeout, true, true, false),
        (ErrorClass::Timeout, false, false, false),
        (ErrorClass::Lost, true, false, false),
    ] {
        let mut was_asked = false;
        Failure::proxying(class, upstream, started, || {
            was_asked = true;
            true
        });
        assert_eq!(
            was_asked, asked,
            "{class:?} upstream {upstream} started {started}"
        );
    }
}

#[test]
fn the_budget_and_the_live_configuration_gate_each_attempt() {
    // (attempts made, max, live configuration routes as before) -> may start, asked live
    for (made, max, unchanged, may, asked) in [
        (0, 1, false, true, false),
        (0, 3, false, true, false),
        (1, 1, true, false, false),
        (1, 3, true, true, true),
        (1, 3, false, false, true),
        (2, 3, true, true, true),
        (3, 3, true, false, false),
        (4, 3, true, false, false),
    ] {
        let mut attempts = Attempts::default();
        for backend in 0..made {
            attempts.start(Attempt {
                route_index: 0,
                backend,
            });
        }
        let mut was_asked = false;
        let result = attempts.may_start(max, || {
            was_asked = true;
            unchanged
        });
        assert_eq!(
            (result, was_asked),
            (may, asked),
            "{made}/{max} {unchanged}"
        );
    }
}

#[test]
fn with_no_backend_left_the_client_hears_why() {
    let timeout = Some(ErrorCode::UpstreamTimeout);
    let unavailable = ErrorCode::Block(BlockCode::RegionUnavailable);
    // (attempts made, last failure) with max 3 -> the answer to "no allowed backend left"
    for (made, last_failure, answer) in [
        // The budget ran out: what the last attempt met.
        (3, timeout, ErrorCode::UpstreamTimeout),
        (3, Some(ErrorCode::UpstreamError), ErrorCode::UpstreamError),
        (3, Some(unavailable), unavailable),
        // Allowed backends ran out first (or the configuration changed): region_unavailable.
        (1, timeout, unavailable),
        (2, Some(ErrorCode::UpstreamError), unavailable),
        (0, None, unavailable),
        (3, None, unavailable),
    ] {
        let mut attempts = Attempts {
            tried: (0..made)
                .map(|backend| Attempt {
                    route_index: 0,
                    backend,
                })
                .collect(),
            last_failure,
            ..Attempts::default()
        };
        attempts.none_left(3);
        let e = Error::explain(ErrorType::HTTPStatus(503), "no allowed backend left");
        assert_eq!(
            final_answer(&attempts, &e, GET),
            Then::Answer(answer),
            "{made} {last_failure:?}"
        );
    }
}

#[test]
fn the_final_answer_follows_the_error_and_what_the_request_reached() {
    use ErrorClass::*;
    let unavailable = Some(ErrorCode::Block(BlockCode::RegionUnavailable));
    let bad_request = Some(ErrorCode::Block(BlockCode::BadRequest));
    let timeout = Some(ErrorCode::UpstreamTimeout);
    let error = Some(ErrorCode::UpstreamError);
    // (class, downstream, started, routed, exhausted, last failure) -> answer
    for (class, down, started, routed, exhausted, last, answer) in [
        (Lost, true, false, true, false, None, None),
        (Timeout, false, true, true, false, None, None),
        (Status, false, true, true, true, None, None),
        (Other, true, false, true, false, None, bad_request),
        (Timeout, true, false, true, true, timeout, bad_request),
        (Other, false, false, false, false, None, bad_request),
        (Lost, false, false, false, false, None, bad_request),
        (Status, false, false, true, true, timeout, unavailable),
        (Timeout, false, false, true, true, None, unavailable),
        (Connect, false, false, true, false, None, unavailable),
        (ConnectTimeout, false, false, true, false, None, unavailable),
        (Status, false, false, true, false, timeout, timeout),
        (Status, false, false, true, false, None, error),
        (Timeout, false, false, true, false, error, timeout),
        (Tls, false, false, true, false, unavailable, error),
        (Lost, false, false, true, false, None, error),
        (Other, false, false, true, false, timeout, error),
    ] {
        let attempts = Attempts {
            exhausted,
            last_failure: last,
            ..Attempts::default()
        };
        let end = FinalError {
            class,
            downstream: down,
            response_started: started,
            routed,
        };
        assert_eq!(attempts.answer(end), answer, "{end:?} {exhausted} {last:?}");
    }
}

fn any_failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        Just(Failure::Connect),
        Just(Failure::ConnectTimeout),
        Just(Failure::Tls),
        any::<bool>().prop_map(|request_sent| Failure::Timeout { request_sent }),
        Just(Failure::Broken),
        Just(Failure::Status5xx),
        Just(Failure::NotUpstream),
    ]
}

fn any_facts() -> impl Strategy<Value = AttemptFacts> {
    any::<[bool; 6]>().prop_map(|b| AttemptFacts {
        idempotent: b[0],
        body_replayable: b[1],
        response_started: b[2],
        reused: b[3],
        pingora_retry: b[4],
        broke_a_backend: b[5],
    })
}

fn is_connect(failure: Failure) -> bool {
    matches!(
        failure,
        Failure::Connect | Failure::ConnectTimeout | Failure::Tls
    )
}

/// Facts a failure can come with: connecting happens before any response.
fn possible(failure: Failure, facts: AttemptFacts) -> AttemptFacts {
    AttemptFacts {
        response_started: facts.response_started && !is_connect(failure),
        ..facts
    }
}

proptest! {
    #[test]
    fn a_request_that_may_have_reached_the_backend_is_resent_only_when_harmless(
        failure in any_failure(),
        facts in any_facts(),
    ) {
        let facts = possible(failure, facts);
        let verdict = judge(failure, facts);
        if is_connect(failure) {
            prop_assert_eq!(verdict.retry, Retry::Elsewhere);
        } else if verdict.retry != Retry::Stop {
            prop_assert!(facts.idempotent && facts.body_replayable && !facts.response_started);
        }
        if facts.response_started {
            prop_assert_eq!(verdict.retry, Retry::Stop);
        }
        if verdict.blame == Blame::FirstBreak {
            prop_assert!(!facts.broke_a_backend && !facts.reused);
        }
        // Only a connection's fault is retried uncounted.
        if verdict.retry == Retry::Again {
            prop_assert_eq!(failure, Failure::Broken);
            prop_assert!(facts.reused || facts.pingora_retry);
        }
    }

    #[test]
    fn verdicts_read_only_the_facts_that_matter(
        failure in any_failure(),
        a in any_facts(),
        b in any_facts(),
    ) {
        if is_connect(failure) || failure == Failure::Status5xx {
            prop_assert_eq!(judge(failure, a), judge(failure, b));
        }
        // After the response started, whether the body was done is not asked.
        let started = a.started();
        prop_assert_eq!(
            judge(Failure::Timeout { request_sent: true }, started),
            judge(Failure::Timeout { request_sent: false }, started)
        );
    }

    /// Pingora's retry loop (`max_retries` is `2 * max_attempts + 1`, as the router sets it)
    /// over attempts that fail as generated, with backends always available.
    #[test]
    fn a_request_never_exceeds_its_budget_nor_blames_two_breaks(
        max in 1u32..6,
        steps in prop::collection::vec((any_failure(), any_facts()), 1..20),
        unchanged in any::<bool>(),
    ) {
        let mut attempts = Attempts::default();
        let mut first_breaks = 0;
        let mut outcome = None;
        let pingora_loop = steps.iter().copied().cycle().take(2 * max as usize + 1);
        for (backend, (failure, facts)) in pingora_loop.enumerate() {
            if !attempts.may_start(max, || unchanged) {
                attempts.none_left(max);
                outcome = Some(attempts.answer(FinalError {
                    class: ErrorClass::Status,
                    downstream: false,
                    response_started: false,
                    routed: true,
                }));
                break;
            }
            attempts.start(Attempt { route_index: 0, backend });
            prop_assert!(attempts.made() <= max as usize);
            let facts = AttemptFacts {
                broke_a_backend: attempts.broke_a_backend(),
                ..possible(failure, facts)
            };
            let verdict = judge(failure, facts);
            if verdict.blame == Blame::FirstBreak {
                first_breaks += 1;
            }
            attempts.apply(&verdict);
            prop_assert!(attempts.made() <= max as usize);
            if verdict.retry == Retry::Stop {
                break;
            }
        }
        prop_assert!(first_breaks <= 1);
        if let Some(answer) = outcome {
            // Out of budget after a failure: that failure's answer. Cut short by a changed
            // configuration (or out of backends): region_unavailable.
            let spent = attempts.made() >= max as usize;
            let expected = if spent {
                attempts.last_failure
            } else {
                Some(ErrorCode::Block(BlockCode::RegionUnavailable))
            };
            prop_assert_eq!(answer, expected);
        }
    }
}
