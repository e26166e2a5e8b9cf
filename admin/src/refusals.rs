//! What happens to refused admin calls (401 and 403), so that a flood of them can neither
//! fill the disk with audit entries nor make real calls wait behind their fsyncs.
//!
//! Per source (an IPv4 address, or an IPv6 /64, which one client usually holds whole):
//!
//! - **Rate limit.** A token bucket of [`Limits::burst`] refusals, refilled at
//!   [`Limits::per_second`]. A refusal over it is answered `429 rate_limited` with
//!   `Retry-After`. Only refusals spend it: a valid token from the same address (a NAT, a
//!   bastion host) is never locked out by someone else's flood. Tokens are 256-bit random, so
//!   the limit is not what stops guessing; it bounds the work a refused caller gets.
//! - **Audit in aggregate.** The first refusal of a quiet source is audited on its own at
//!   once, with who, what and the request id. Every further refusal from it (429s included)
//!   is counted, and written as one entry with the count per [`Limits::interval`]. A source
//!   that stays refused keeps one entry per interval; one that is quiet for a whole interval
//!   is forgotten, and its next refusal is audited on its own again.
//! - **Bounded memory.** At most [`Limits::max_sources`] sources are tracked; refusals from
//!   further sources share one more bucket and one more aggregate entry (source `*`).
//!
//! So the audit log takes at most about `2 x (max_sources + 1)` refusal entries per interval,
//! however many calls are refused. The policy is pure: the caller passes the time in.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

/// The shipped limits (see the module docs). Constants rather than config keys: they bound
/// abuse and need no tuning for real use, where refusals are rare.
pub(crate) const LIMITS: Limits = Limits {
    interval: Duration::from_secs(60),
    burst: 20,
    per_second: 1.0,
    max_sources: 256,
};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long refusals from one source are counted into one audit entry.
    pub(crate) interval: Duration,
    /// Refusals a source gets answered 401/403 in a row before 429.
    pub(crate) burst: u32,
    /// Refusals per second the bucket refills.
    pub(crate) per_second: f64,
    /// Sources tracked one by one; the rest share one bucket and entry.
    pub(crate) max_sources: usize,
}

/// Who refused calls come from: an IPv4 address, an IPv6 /64, or `*` for the sources
/// beyond [`Limits::max_sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4(std::net::Ipv4Addr),
    V6Prefix(u64),
    Others,
}

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(v4) => write!(f, "{v4}"),
            Source::V6Prefix(prefix) => {
                write!(
                    f,
                    "{}/64",
                    std::net::Ipv6Addr::from(u128::from(*prefix) << 64)
                )
            }
            Source::Others => f.write_str("*"),
        }
    }
}

/// One refused call, as far as the policy needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal<'a> {
    pub(crate) status: u16,
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) tenant: Option<&'a str>,
    pub(crate) request_id: &'a str,
}

/// What to do with a refused call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// Answer the refusal and audit this call on its own now.
    AuditNow,
    /// Answer the refusal; it is counted into the source's next aggregate entry.
    Counted,
    /// Answer `429` with `Retry-After` (whole seconds, at least 1); counted too.
    Limited { retry_after_s: u64 },
}

/// Refused calls from one source during one interval, to be audited as one entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Aggregate {
    pub(crate) source: Source,
    /// When the counted interval started and ended, on the caller's clock.
    pub(crate) since: Duration,
    pub(crate) until: Duration,
    pub(crate) count: u64,
    /// Calls per status answered (401, 403, 429).
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// The actor, action and tenant if every counted call had the same, else `None`.
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) tenant: Option<String>,
    /// The last counted call's request id.
    pub(crate) last_request_id: String,
}

#[derive(Debug)]
struct Tracked {
    tokens: f64,
    refilled: Duration,
    window_started: Duration,
    counted: Option<Aggregate>,
}

/// The policy's state: buckets and counts per source.
#[derive(Debug)]
pub(crate) struct Refusals {
    limits: Limits,
    sources: HashMap<Source, Tracked>,
}

/// `Some(value)` while every counted call had the same value.
fn same(kept: &mut Option<String>, first: bool, value: Option<&str>) {
    if first {
        *kept = value.map(str::to_owned);
    } else if kept.as_deref() != value {
        *kept = None;
    }
}

impl Refusals {
    pub(crate) fn new(limits: Limits) -> Self {
        Refusals {
            limits,
            sources: HashMap::new(),
        }
    }

    /// Decides about one refused call from `ip` at `now`.
    pub(crate) fn refuse(
        &mut self,
        now: Duration,
        ip: IpAddr,
        refusal: &Refusal<'_>,
    ) -> (Verdict, Vec<Aggregate>) {
        let closed = self.due(now);
        let mut source = Source::of(ip);
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            source = Source::Others;
        }
        let limits = self.limits;
        let tracked = match self.sources.entry(source) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                // A quiet source: this refusal is audited on its own and spends a token.
                vacant.insert(Tracked {
                    tokens: f64::from(limits.burst) - 1.0,
                    refilled: now,
                    window_started: now,
                    counted: None,
                });
                return (Verdict::AuditNow, closed);
            }
            std::collections::hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
        };
        let elapsed = now.saturating_sub(tracked.refilled).as_secs_f64();
        tracked.tokens =
            (tracked.tokens + elapsed * limits.per_second).min(f64::from(limits.burst));
        tracked.refilled = now;
        let verdict = if tracked.tokens >= 1.0 {
            tracked.tokens -= 1.0;
            Verdict::Counted
        } else {
            let wait = (1.0 - tracked.tokens) / limits.per_second;
            Verdict::Limited {
                retry_after_s: (wait.ceil() as u64).max(1),
            }
        };
        let status = match verdict {
            Verdict::Limited { .. } => 429,
            _ => refusal.status,
        };
        let first = tracked.counted.is_none();
        let counted = tracked.counted.get_or_insert_with(|| Aggregate {
            source,
            since: tracked.window_started,
            until: tracked.window_started,
            count: 0,
            statuses: BTreeMap::new(),
            actor: None,
            action: None,
            tenant: None,
            last_request_id: String::new(),
        });
        counted.count += 1;
        *counted.statuses.entry(status).or_default() += 1;
        same(&mut counted.actor, first, Some(refusal.actor));
        same(&mut counted.action, first, Some(refusal.action));
        same(&mut counted.tenant, first, refusal.tenant);
        counted.last_request_id = refusal.request_id.to_owned();
        (verdict, closed)
    }

    /// The aggregates of intervals that ended by `now`, to be audited. Sources quiet for a
    /// whole interval are forgotten.
    pub(crate) fn due(&mut self, now: Duration) -> Vec<Aggregate> {
        let interval = self.limits.interval;
        let mut closed = Vec::new();
        self.sources.retain(|_, tracked| {
            if now < tracked.window_started + interval {
                return true;
            }
            let until = tracked.window_started + interval;
            tracked.window_started = now;
            match tracked.counted.take() {
                Some(mut aggregate) => {
                    aggregate.until = until;
                    closed.push(aggregate);
                    true
                }
                None => false,
            }
        });
        closed.sort_by_key(|a| (a.since, a.source.to_string()));
        closed
    }

    /// Everything counted and not yet audited (at shutdown), whether its interval ended or not.
    pub(crate) fn drain(&mut self, now: Duration) -> Vec<Aggregate> {
        let mut all: Vec<Aggregate> = self
            .sources
            .drain()
            .filter_map(|(_, tracked)| tracked.counted)
            .map(|mut aggregate| {
                aggregate.until = now;
                aggregate
            })
            .collect();
        all.sort_by_key(|a| (a.since, a.source.to_string()));
        all
    }

    /// How many sources are tracked (for tests: the table stays bounded).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        interval: Duration::from_secs(60),
        burst: 3,
        per_second: 0.5,
        max_sources: 2,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn unauthenticated(request_id: &str) -> Refusal<'_> {
        Refusal {
            status: 401,
            actor: "(anonymous)",
            action: "tenant.list",
            tenant: None,
            request_id,
        }
    }

    fn s(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    /// Calls from one source at the given times: each verdict, and the aggregates closed.
    #[test]
    fn a_source_is_audited_once_then_counted_then_limited_then_refilled() {
        use Verdict::*;
        // (time in s, verdict)
        let table: &[(f64, Verdict)] = &[
            (0.0, AuditNow),
            (0.1, Counted),
            (0.2, Counted),
            // The burst of 3 is spent: 429 until a token is back (0.5 per second: 2 s).
            (0.3, Limited { retry_after_s: 2 }),
            (1.3, Limited { retry_after_s: 1 }),
            (2.4, Counted),
            (2.5, Limited { retry_after_s: 2 }),
            // Long after: the bucket is full again (it holds at most `burst`).
            (59.0, Counted),
            (59.1, Counted),
            (59.2, Counted),
            (59.3, Limited { retry_after_s: 2 }),
        ];
        let mut refusals = Refusals::new(LIMITS);
        for (i, (at, want)) in table.iter().enumerate() {
            let id = format!("r-{i}");
            let (verdict, closed) = refusals.refuse(s(*at), ip("192.0.2.1"), &unauthenticated(&id));
            assert_eq!(verdict, *want, "call {i} at {at} s");
            assert!(closed.is_empty(), "nothing closes inside the interval");
        }
        // The interval ends: one entry counts every call after the first, 429s included.
        let closed = refusals.due(s(60.0));
        assert_eq!(closed.len(), 1);
        let aggregate = &closed[0];
        assert_eq!(aggregate.source.to_string(), "192.0.2.1");
        assert_eq!((aggregate.since, aggregate.until), (s(0.0), s(60.0)));
        assert_eq!(aggregate.count, 10);
        assert_eq!(aggregate.statuses, BTreeMap::from([(401, 6), (429, 4)]));
        assert_eq!(aggregate.actor.as_deref(), Some("(anonymous)"));
        assert_eq!(aggregate.last_request_id, "r-10");
        assert!(refusals.due(s(61.0)).is_empty(), "closed once");
    }

    #[test]
    fn a_sustained_flood_is_one_entry_per_interval_and_a_quiet_source_is_forgotten() {
        let mut refusals = Refusals::new(LIMITS);
        let mut audited_now = 0;
        let mut entries = Vec::new();
        // 10 calls a second for 5 minutes.
        for tenth in 0..3000 {
            let (verdict, closed) = refusals.refuse(
                s(f64::from(tenth) / 10.0),
                ip("192.0.2.1"),
                &unauthenticated("r"),
            );
            audited_now += usize::from(verdict == Verdict::AuditNow);
            entries.extend(closed);
        }
        entries.extend(refusals.due(s(300.0)));
        assert_eq!(audited_now, 1);
        assert_eq!(entries.len(), 5, "one per interval: {entries:?}");
        let counted: u64 = entries.iter().map(|a| a.count).sum();
        assert_eq!(counted + 1, 3000, "every call is accounted for");
        assert!(
            entries.windows(2).all(|w| w[0].until == w[1].since),
            "intervals follow each other"
        );
        // A whole quiet interval: forgotten, so the next refusal is audited on its own again.
        assert!(refusals.due(s(360.0)).is_empty());
        assert_eq!(refusals.tracked(), 0);
        let (verdict, _) = refusals.refuse(s(400.0), ip("192.0.2.1"), &unauthenticated("r"));
        assert_eq!(verdict, Verdict::AuditNow);
    }

    #[test]
    fn sources_beyond_the_table_share_one_bucket_and_one_entry() {
        let mut refusals = Refusals::new(LIMITS);
        // (source, verdict): the table holds 2 sources; the 3rd and later share `*`.
        let table: &[(&str, Verdict)] = &[
            ("192.0.2.1", Verdict::AuditNow),
            ("2001:db8:0:1::1", Verdict::AuditNow),
            // The same /64 is the same source.
            ("2001:db8:0:1::2", Verdict::Counted),
            ("::ffff:192.0.2.1", Verdict::Counted),
            ("192.0.2.3", Verdict::AuditNow),
            ("192.0.2.4", Verdict::Counted),
            ("192.0.2.5", Verdict::Counted),
            ("192.0.2.6", Verdict::Limited { retry_after_s: 2 }),
        ];
        for (i, (source, want)) in table.iter().enumerate() {
            let (verdict, _) =
                refusals.refuse(s(i as f64 * 0.01), ip(source), &unauthenticated("r"));
            assert_eq!(verdict, *want, "{source}");
        }
        assert_eq!(refusals.tracked(), 3);
        let closed = refusals.drain(s(1.0));
        let sources: Vec<String> = closed.iter().map(|a| a.source.to_string()).collect();
        assert_eq!(sources, ["192.0.2.1", "2001:db8:0:1::/64", "*"]);
        assert_eq!(
            closed.iter().map(|a| a.count).collect::<Vec<_>>(),
            [1, 1, 3]
        );
    }

    #[test]
    fn an_aggregate_keeps_only_what_every_counted_call_shared() {
        let mut refusals = Refusals::new(LIMITS);
        let forbidden = |tenant| Refusal {
            status: 403,
            actor: "acme-admin",
            action: "tenant.read",
            tenant: Some(tenant),
            request_id: "r",
        };
        refusals.refuse(s(0.0), ip("192.0.2.1"), &forbidden("globex"));
        refusals.refuse(s(0.1), ip("192.0.2.1"), &forbidden("globex"));
        refusals.refuse(s(0.2), ip("192.0.2.1"), &forbidden("initech"));
        let closed = refusals.drain(s(1.0));
        assert_eq!(closed[0].actor.as_deref(), Some("acme-admin"));
        assert_eq!(closed[0].action.as_deref(), Some("tenant.read"));
        assert_eq!(closed[0].tenant, None, "two tenants were asked for");
        assert_eq!(closed[0].statuses, BTreeMap::from([(403, 2)]));
        assert_eq!((closed[0].since, closed[0].until), (s(0.0), s(1.0)));
    }
}
