//! The Pingora `ProxyHttp` implementation.
//!
//! Per request: load the state once, identify the tenant, ask the engine for a [`Route`], then
//! walk the route's sites in order, round-robin inside a site, skipping backends in cooldown and
//! backends already tried by this request. Every backend handed to Pingora comes from the route,
//! so retries and failover can never leave the regions the engine allowed.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::HOST;
use pingora::http::authority::raw_target_authority;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use regions::{Block, BlockCode, HeaderValues, RegionId, Route, RoutedSite, TenantId};
use smallvec::SmallVec;

use crate::access_log::{AccessLog, Record as AccessRecord};
use crate::attempt::{self, Attempt, AttemptFacts, Attempts, Blame, Failure, FinalError, Retry};
use crate::health::InFlight;
use crate::lifecycle::Drain;
use crate::metrics::UpstreamError;
use crate::preference::GeoHint;
use crate::request_id::{RequestId, RequestIds};
use crate::respond::{write_error, Connection, ErrorBody, ErrorCode};
use crate::routing::{self, RequestFacts, TlsFacts};
use crate::state::{RouterState, SharedState};

const RESIDENCY_HEADER_PREFIX: &str = "x-residency-";

pub struct ResidencyProxy {
    state: SharedState,
    access_log: Option<AccessLog>,
    drain: Drain,
    ids: Arc<RequestIds>,
}

impl ResidencyProxy {
    pub fn new(
        state: SharedState,
        access_log: Option<AccessLog>,
        drain: Drain,
        ids: Arc<RequestIds>,
    ) -> Self {
        ResidencyProxy {
            state,
            access_log,
            drain,
            ids,
        }
    }
}

#[derive(Default)]
pub struct RequestCtx {
    state: Option<Arc<RouterState>>,
    request_id: RequestId,
    tenant: Option<TenantId>,
    /// The tenant is in the registry (only then do backends get `x-residency-tenant`).
    registered: bool,
    hint: Option<RegionId>,
    route: Option<Route>,
    strip_path_prefix: Option<usize>,
    attempts: Attempts,
    current: Option<Attempt>,
    /// Response headers went downstream: no retry or error page is possible any more.
    response_started: bool,
    /// Counts this request on the backend of the current attempt (least-in-flight).
    in_flight: Option<InFlight>,
    /// The error code of the router's own answer, if it gave one.
    answered: Option<&'static str>,
    /// When the request arrived, for the duration histogram.
    arrived: Option<std::time::Instant>,
    /// The address GeoIP located (SPEC 6), and what it said.
    client: Option<IpAddr>,
    geo: Option<GeoHint>,
}

impl RequestCtx {
    fn state(&self) -> &RouterState {
        self.state
            .as_deref()
            .expect("state is loaded in request_filter before any other hook")
    }

    fn current_site(&self) -> Option<RoutedSite> {
        let attempt = self.current?;
        Some(self.route.as_ref()?.sites[attempt.route_index])
    }

    /// `Retry-After` for 503s: a client retrying before the next health check would only
    /// meet the same unavailable backends.
    fn retry_after(&self, code: ErrorCode) -> Option<u64> {
        match code {
            ErrorCode::Block(BlockCode::RegionUnavailable) => Some(self.state().retry_after_secs),
            // The registry store is retried with a backoff of about this.
            ErrorCode::Block(BlockCode::RegistryUnavailable) => Some(1),
            _ => None,
        }
    }

    fn error_body(
        &self,
        code: ErrorCode,
        home: Option<RegionId>,
        requested: Option<RegionId>,
    ) -> ErrorBody<'_> {
        let topology = &self.state().snapshot.topology;
        let region_name = |r: RegionId| topology.region(r).name.as_str();
        ErrorBody {
            error: code.as_str(),
            message: code.message(),
            tenant: self.tenant.as_ref().map(TenantId::as_str),
            home_region: home.map(region_name),
            requested_region: requested.map(region_name),
            request_id: self.request_id.as_str(),
        }
    }
}

fn header_values<'r>(req: &'r RequestHeader, name: &str) -> HeaderValues<'r> {
    let mut values = req.headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => HeaderValues::Absent,
        (Some(v), None) => HeaderValues::One(v.as_bytes()),
        (Some(_), Some(_)) => HeaderValues::Repeated,
    }
}

/// Host header, else the authority of the URI (h2's `:authority`), else that of an
/// absolute-form target (`GET http://host/ HTTP/1.1`): Pingora forwards that authority as the
/// upstream Host, so it must name the tenant too. The last is found by Pingora's own parser,
/// so both read the same bytes. Two Hosts, or a Host that differs from the target's authority
/// or `:authority`, never get here: Pingora refuses them before any hook (docs/hardening.md).
///
/// Bytes that are not UTF-8 are kept (as U+FFFD) rather than dropped: the backend receives
/// this Host, so routing judges it (and refuses it as not `host[:port]`), never reads the
/// request as if it had no Host.
fn request_host(req: &RequestHeader) -> Option<Cow<'_, str>> {
    let bytes = match (req.headers.get(HOST), req.uri.authority()) {
        (Some(host), _) => host.as_bytes(),
        (None, Some(authority)) => authority.as_str().as_bytes(),
        (None, None) => raw_target_authority(req.raw_path()).authority()?,
    };
    Some(String::from_utf8_lossy(bytes))
}

/// The server name of a TLS connection (`None` on plain HTTP).
fn server_name(session: &Session) -> Option<&crate::tls::ServerName> {
    let ssl = session.digest()?.ssl_digest.as_ref()?;
    ssl.extension.get::<crate::tls::ServerName>()
}

impl ResidencyProxy {
    /// Identification + registry + engine. Returns the block to answer with, if any.
    fn decide(&self, session: &Session, ctx: &mut RequestCtx) -> Result<Route, Block> {
        let req = session.req_header();
        let host = request_host(req);
        let facts = RequestFacts {
            host: host.as_deref(),
            path: req.uri.path(),
            method: req.method.as_str(),
            upgrade: session.is_upgrade_req(),
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            tls: server_name(session).map(|name| TlsFacts {
                server_name: name.0.as_deref(),
            }),
        };
        let forwarded_for = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes());
        let routed = routing::route(
            ctx.state(),
            &facts,
            |name| header_values(req, name),
            forwarded_for,
            ctx.state().clock.unix_now(),
        );
        if routed.client.is_some() && ctx.state().snapshot.geoip.is_some() {
            ctx.state().metrics.geoip(routed.geo.is_some());
        }
        ctx.tenant = routed.tenant;
        ctx.registered = routed.registered;
        ctx.hint = routed.hint;
        ctx.strip_path_prefix = routed.strip_path_prefix;
        ctx.client = routed.client;
        ctx.geo = routed.geo;
        routed.decision
    }

    async fn respond_block(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        block: Block,
    ) -> Result<()> {
        let code = ErrorCode::Block(block.code);
        ctx.answered = Some(code.as_str());
        ctx.state()
            .metrics
            .blocked(block.code, block.home_region, block.requested_region);
        let body = ctx.error_body(code, block.home_region, block.requested_region);
        tracing::debug!(
            request_id = ctx.request_id.as_str(),
            tenant = body.tenant,
            code = block.code.as_str(),
            "request blocked"
        );
        write_error(
            session,
            code,
            &body,
            ctx.retry_after(code),
            Connection::KeepAlive,
        )
        .await
    }

    /// The next backend to try: first untried, available backend in route order.
    fn next_attempt(&self, ctx: &RequestCtx) -> Option<Attempt> {
        let state = ctx.state();
        let route = ctx.route.as_ref()?;
        let max_attempts = state.snapshot.proxy.max_attempts;
        if !ctx
            .attempts
            .may_start(max_attempts, || self.decided_as_now(ctx))
        {
            return None;
        }
        let now = state.clock.unix_now();
        route
            .sites
            .iter()
            .enumerate()
            .filter(|(_, routed)| route.still_allows(routed, now))
            .find_map(|(route_index, routed)| {
                let tried = |backend| {
                    ctx.attempts.has_tried(Attempt {
                        route_index,
                        backend,
                    })
                };
                state.pools.pick(routed.site, tried).map(|backend| Attempt {
                    route_index,
                    backend,
                })
            })
    }

    /// Whether the configuration live now would route this request as its own did. A request
    /// keeps the state it started with, so a reload or registry change while it retries (a
    /// revoked replication, a moved tenant or backend) could otherwise send a retry where the
    /// live configuration no longer allows it. When anything that decided the route changed,
    /// retries stop and the request fails closed (503 `region_unavailable`). Retries are rare
    /// and reloads rarer: this costs one pointer load per retry.
    fn decided_as_now(&self, ctx: &RequestCtx) -> bool {
        let live = self.state.load();
        let own = ctx.state();
        if live.generation == own.generation {
            return true;
        }
        let (then, now) = (&own.snapshot, &live.snapshot);
        let record = |s: &residency_config::Snapshot| ctx.tenant.and_then(|t| s.registry.get(&t));
        then.topology == now.topology
            && then.sites == now.sites
            && then.unknown == now.unknown
            && record(then) == record(now)
    }

    fn count_upstream_error(&self, ctx: &RequestCtx, kind: UpstreamError) {
        if let Some(site) = ctx.current_site() {
            ctx.state().metrics.upstream_error(site.site, kind);
        }
    }

    /// Passive health: tell the pool how the current attempt went.
    fn record_outcome(&self, ctx: &RequestCtx, success: bool) {
        if let (Some(attempt), Some(site)) = (ctx.current, ctx.current_site()) {
            let pools = &ctx.state().pools;
            if success {
                pools.record_success(site.site, attempt.backend);
            } else {
                pools.record_failure(site.site, attempt.backend);
            }
        }
    }

    /// Carries out a verdict on the current attempt; returns Pingora's retry flag.
    fn act(&self, ctx: &mut RequestCtx, verdict: &attempt::Verdict) -> bool {
        if let Some(kind) = verdict.count {
            self.count_upstream_error(ctx, kind);
        }
        if verdict.blame != Blame::Nobody {
            self.record_outcome(ctx, false);
        }
        ctx.attempts.apply(verdict);
        verdict.retry != Retry::Stop
    }
}

/// What a failed attempt's verdict depends on, from the session and the request so far.
/// `reused` and `pingora_retry` describe the attempt's connection (false when none was made).
fn attempt_facts(
    session: &Session,
    ctx: &RequestCtx,
    reused: bool,
    pingora_retry: bool,
) -> AttemptFacts {
    AttemptFacts {
        idempotent: session.req_header().method.is_idempotent(),
        body_replayable: !session.as_ref().retry_buffer_truncated(),
        response_started: ctx.response_started,
        reused,
        pingora_retry,
        broke_a_backend: ctx.attempts.broke_a_backend(),
    }
}

#[async_trait]
impl ProxyHttp for ResidencyProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.drain.is_draining() {
            session.set_keepalive(None);
        }
        ctx.arrived = Some(std::time::Instant::now());
        ctx.state = Some(self.state.load_full());
        ctx.request_id = self
            .ids
            .for_request(session.req_header().headers.get("x-request-id"));
        match self.decide(session, ctx) {
            Ok(route) => {
                ctx.route = Some(route);
                // Bodies of idempotent requests are buffered (up to Pingora's limit) so that a
                // retry after a timeout can resend them.
                if session.req_header().method.is_idempotent() {
                    session.as_mut().enable_retry_buffering();
                }
                Ok(false)
            }
            Err(block) => {
                self.respond_block(session, ctx, block).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(attempt) = self.next_attempt(ctx) else {
            let max_attempts = ctx.state().snapshot.proxy.max_attempts;
            ctx.attempts.none_left(max_attempts);
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no allowed backend left to try",
            ));
        };
        let retry = ctx.attempts.start(attempt);
        ctx.current = Some(attempt);
        let site = ctx.current_site().expect("attempt was just set").site;
        if retry {
            ctx.state().metrics.retry(site);
        }
        // Replacing the guard ends the previous attempt's count.
        ctx.in_flight = ctx.state().pools.in_flight(site, attempt.backend);
        let state = ctx.state();
        let proxy = &state.snapshot.proxy;
        let mut peer = state.pools.peer(site, attempt.backend);
        peer.options.connection_timeout = Some(proxy.connect_timeout);
        peer.options.read_timeout = Some(proxy.read_timeout);
        peer.options.write_timeout = Some(proxy.write_timeout);
        peer.options.idle_timeout = Some(proxy.idle_timeout);
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !reused {
            if let Some(site) = ctx.current_site() {
                ctx.state().metrics.upstream_connection_opened(site.site);
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let failure = Failure::connecting(attempt::classify(&e));
        let verdict = attempt::judge(failure, attempt_facts(session, ctx, false, false));
        let retry = self.act(ctx, &verdict);
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        e.retry.decide_reuse(client_reused);
        let facts = attempt_facts(session, ctx, client_reused, e.retry());
        let failure = Failure::proxying(
            attempt::classify(&e),
            *e.esource() == ErrorSource::Upstream,
            ctx.response_started,
            || session.as_mut().is_body_done(),
        );
        let verdict = attempt::judge(failure, facts);
        let retry = self.act(ctx, &verdict);
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let state = ctx.state();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let trusted_peer = peer
            .is_some_and(|ip| geoip::is_trusted_proxy(ip, &state.snapshot.proxy.trusted_proxies));
        // Clients must never inject residency decisions or forwarding facts: drop every
        // x-residency-* and router-owned forwarding header they sent, and underscore spellings
        // of those and of a tenant header, which CGI-style backends read as the same name
        // (`HTTP_X_RESIDENCY_TENANT`). See docs/hardening.md for the list.
        let spoofed = matching(&upstream.headers, |name| {
            is_spoofing(name, &state.snapshot.identifier)
        });
        for name in spoofed {
            upstream.remove_header(&name);
        }

        let site = ctx
            .current_site()
            .expect("upstream_peer picked a site before the request is sent");
        if let Some(tenant) = ctx.tenant.filter(|_| ctx.registered) {
            upstream.insert_header("x-residency-tenant", tenant.as_str())?;
        }
        upstream.insert_header("x-residency-region", state.names.region(site.region))?;
        upstream.insert_header("x-residency-site", state.names.site(site.site))?;
        upstream.insert_header("x-request-id", ctx.request_id.header())?;

        // The Host the router validated and routed by (request_host refused every other).
        if let Some(host) = upstream.headers.get(HOST).filter(|h| !h.is_empty()) {
            let host = host.clone();
            upstream.insert_header("x-forwarded-host", host)?;
        }
        // Only a trusted proxy's list is continued; anyone else's is replaced by the peer.
        if let Some(ip) = peer {
            let mut text = [0u8; 64];
            let ip = crate::addr_text::ip_text(ip, &mut text).as_bytes();
            if trusted_peer {
                append_list_header(upstream, "x-forwarded-for", ip)?;
            } else {
                let value = http::HeaderValue::from_bytes(ip)
                    .or_err(ErrorType::InternalError, "IP text is a header value")?;
                upstream.insert_header("x-forwarded-for", value)?;
            }
        }
        if !(trusted_peer && upstream.headers.contains_key("x-forwarded-proto")) {
            let proto = if server_name(session).is_some() {
                "https"
            } else {
                "http"
            };
            upstream.insert_header("x-forwarded-proto", proto)?;
        }

        if let Some(strip) = ctx.strip_path_prefix {
            let uri = &upstream.uri;
            let rest = &uri.path()[strip..];
            let path = if rest.is_empty() { "/" } else { rest };
            let path_and_query = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            let new_uri = http::Uri::builder()
                .path_and_query(path_and_query)
                .build()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting path", e))?;
            upstream.set_uri(new_uri);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if response.status.is_server_error() {
            // The verdict on a 5xx reads no facts of the connection.
            let verdict = attempt::judge(
                Failure::Status5xx,
                attempt_facts(session, ctx, false, false),
            );
            self.act(ctx, &verdict);
        } else {
            self.record_outcome(ctx, true);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.response_started = true;
        // Only the router speaks about residency to clients, and only when configured to.
        for name in matching(&response.headers, |name| {
            name.starts_with(RESIDENCY_HEADER_PREFIX)
        }) {
            response.remove_header(&name);
        }
        response.insert_header("x-request-id", ctx.request_id.header())?;
        let state = ctx.state();
        if state.snapshot.proxy.expose_decision {
            if let Some(site) = ctx.current_site() {
                response.insert_header("x-residency-region", state.names.region(site.region))?;
                response.insert_header("x-residency-site", state.names.site(site.site))?;
            }
        }
        Ok(())
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        _ctx: &mut RequestCtx,
    ) -> Result<Option<bytes::Bytes>> {
        // Trailers are headers too: a backend must not speak about residency through them.
        for name in matching(trailers, |name| name.starts_with(RESIDENCY_HEADER_PREFIX)) {
            trailers.remove(&name);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let no_reuse = |error_code| FailToProxy {
            error_code,
            can_reuse_downstream: false,
        };
        // Before request_filter loaded the state there is nothing to answer with.
        if ctx.state.is_none() {
            return no_reuse(0);
        }
        let answer = ctx.attempts.answer(FinalError {
            class: attempt::classify(e),
            downstream: *e.esource() == ErrorSource::Downstream,
            response_started: ctx.response_started,
            routed: ctx.route.is_some(),
        });
        let Some(code) = answer else {
            return no_reuse(0);
        };
        if let ErrorCode::Block(block) = code {
            let home = ctx.route.as_ref().map(|r| r.home_region);
            ctx.state().metrics.blocked(block, home, ctx.hint);
        }
        ctx.answered = Some(code.as_str());
        let retry_after = ctx.retry_after(code);
        let home = ctx.route.as_ref().map(|r| r.home_region);
        let body = ctx.error_body(code, home, ctx.hint);
        // Pingora does not reuse a client connection after a proxying error.
        match write_error(session, code, &body, retry_after, Connection::Close).await {
            Ok(()) => no_reuse(code.status()),
            Err(_) => no_reuse(0),
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.arrived.map(|t| t.elapsed()).unwrap_or_default();
        if let (Some(state), Some(route), Some(site), Some(response)) = (
            ctx.state.as_deref(),
            ctx.route.as_ref(),
            ctx.current_site(),
            session.response_written(),
        ) {
            // Proxied requests only: the router's own answers are counted as blocks.
            if ctx.response_started {
                let metrics = &state.metrics;
                metrics.request(
                    route.home_region,
                    site.site,
                    response.status.as_u16(),
                    elapsed.as_secs_f64(),
                );
                metrics.cross_region(route.home_region, site.site, site.reason);
            }
        }
        if let (Some(log), Some(state)) = (&self.access_log, &ctx.state) {
            let served = ctx.current_site().filter(|_| ctx.response_started);
            log.record(AccessRecord {
                unix_ms: state.clock.unix_ms(),
                state: Arc::clone(state),
                request_id: ctx.request_id.clone(),
                method: session.req_header().method.clone(),
                tenant: ctx.tenant,
                home_region: ctx.route.as_ref().map(|r| r.home_region),
                served: served.map(|s| (s.region, s.site)),
                backend: served
                    .zip(ctx.current)
                    .map(|(s, a)| state.pools.addr(s.site, a.backend)),
                outcome: ctx.answered.unwrap_or(if ctx.response_started {
                    "routed"
                } else {
                    "none"
                }),
                status: session.response_written().map_or(0, |r| r.status.as_u16()),
                attempts: ctx.attempts.made(),
                duration_us: elapsed.as_micros() as u64,
                bytes_sent: session.body_bytes_sent(),
            });
        }
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let Some(state) = ctx.state.as_deref() else {
            return;
        };
        let topology = &state.snapshot.topology;
        let route: Vec<&str> = ctx
            .route
            .iter()
            .flat_map(|r| r.sites.iter())
            .map(|s| topology.site(s.site).name.as_str())
            .collect();
        let served = ctx.current_site().map(|s| {
            (
                topology.region(s.region).name.as_str(),
                topology.site(s.site).name.as_str(),
                s.reason,
            )
        });
        let backend = ctx
            .current
            .zip(ctx.current_site())
            .map(|(a, s)| state.pools.addr(s.site, a.backend).to_string());
        tracing::debug!(
            request_id = ctx.request_id.as_str(),
            tenant = ctx.tenant.as_ref().map(TenantId::as_str),
            home_region = ctx.route.as_ref().map(|r| topology.region(r.home_region).name.as_str()),
            site_order = ?route,
            served = ?served,
            backend = backend.as_deref(),
            attempts = ctx.attempts.made(),
            client = ctx.client.map(|ip| ip.to_string()),
            geo = ?ctx.geo,
            status = session.response_written().map(|r| r.status.as_u16()),
            error = e.map(|e| e.to_string()),
            "request done"
        );
    }
}

/// The names in `headers` that `matches` picks (usually none: no allocation then).
fn matching(
    headers: &http::HeaderMap,
    matches: impl Fn(&str) -> bool,
) -> SmallVec<[http::HeaderName; 2]> {
    headers
        .keys()
        .filter(|name| matches(name.as_str()))
        .cloned()
        .collect()
}

/// Client headers that state facts only the router may state: how the client reached it
/// (host, port, scheme, address, original URL) or which method the backend should apply
/// (a `GET` with `X-HTTP-Method-Override: DELETE` is a write to frameworks that honour it, and
/// a read-replica region admits only reads). Backends read each of them in some framework
/// (Rails, Django, Express, Spring, IIS, Symfony); the router removes them and sets its own
/// `x-forwarded-host`, `-for` and `-proto`.
const ROUTER_OWNED_HEADERS: [&str; 18] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// `x-forwarded-for` / `-proto`: continued from a trusted proxy, replaced from anyone else.
const CLIENT_ADDRESS_HEADERS: [&str; 2] = ["x-forwarded-for", "x-forwarded-proto"];

/// Whether a client header could pass for a residency decision, a tenant header or a
/// forwarding fact the router owns. `name` is lowercase (as `http` stores it).
fn is_spoofing(name: &str, identifier: &regions::TenantIdentifier) -> bool {
    if name.starts_with(RESIDENCY_HEADER_PREFIX) || ROUTER_OWNED_HEADERS.contains(&name) {
        return true;
    }
    if !name.contains('_') {
        return false;
    }
    // The name with `_` read as `-`, compared without building it. Underscore spellings are
    // never legitimate for these names, so they go even from trusted proxies.
    let dashed = || name.bytes().map(|b| if b == b'_' { b'-' } else { b });
    let prefix = RESIDENCY_HEADER_PREFIX.as_bytes();
    dashed().take(prefix.len()).eq(prefix.iter().copied())
        || ROUTER_OWNED_HEADERS
            .iter()
            .chain(&CLIENT_ADDRESS_HEADERS)
            .any(|owned| dashed().eq(owned.bytes()))
        || identifier.sources().iter().any(
            |source| matches!(source, regions::TenantSource::Header(h) if dashed().eq(h.bytes())),
        )
}

/// Appends `value` to a comma-separated list header (`x-forwarded-for: a, b`).
fn append_list_header(req: &mut RequestHeader, name: &'static str, value: &[u8]) -> Result<()> {
    // Join every line of the header: a client may send the list split over several lines.
    let mut combined: SmallVec<[u8; 128]> = SmallVec::new();
    for existing in req.headers.get_all(name) {
        let existing = existing.as_bytes().trim_ascii();
        if !existing.is_empty() {
            combined.extend_from_slice(existing);
            combined.extend_from_slice(b", ");
        }
    }
    combined.extend_from_slice(value);
    let value = http::HeaderValue::from_bytes(&combined)
        .or_err(ErrorType::InvalidHTTPHeader, "invalid list header value")?;
    req.insert_header(name, value)
}
