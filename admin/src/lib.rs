//! The admin API on `listen.admin` (documented in `docs/openapi.yaml`).
//!
//! Enterprise admins move their tenants and set replication; operators manage everything;
//! auditors read the audit log. Every call is authenticated with a bearer token whose SHA-256
//! the config holds, and authorized by the token's role ([`auth`]). A change is acknowledged
//! only once it is in the audit log and the registry store (both fsynced) and live: the next
//! data-plane request follows it. Changes and reloads take the same lock, so they never
//! interleave. Every answer is JSON, errors included.

pub mod audit;
pub mod auth;
mod commit;
mod explain;
mod export;
mod refusals;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use regions::{TenantId, TenantRecord};
use residency_config::{AdminToken, RegistryStore, TenantChange, TenantView};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use audit::{AuditTrail, Entry, Filter};
use auth::Action;
use residency_dataplane::lifecycle::Readiness;
use residency_dataplane::request_id::RequestIds;
use residency_dataplane::state::{RouterState, SharedState};
pub use writer::{
    CommitError, Committed, FleetRegistry, FleetView, RegistryLock, RegistryWriter, RouterView,
    StoredTenant, TenantWrite, Unavailable,
};

/// Everything the API works with.
pub struct Admin {
    /// What the data plane serves now: reads answer from it.
    pub state: SharedState,
    /// How changes become live, under the lock that keeps them from interleaving with reloads.
    pub writer: Arc<dyn RegistryWriter>,
    /// Where changes are made durable (the registry file).
    pub store: Arc<dyn RegistryStore>,
    pub audit: Arc<dyn AuditTrail>,
    /// Fleet mode: changes go to the shared store, with compare-and-swap, instead of `store`;
    /// they reach this router's state the way they reach every other router's.
    pub fleet: Option<Arc<dyn FleetRegistry>>,
    /// `/readyz`: ready once the first round of health checks is in.
    pub readiness: Readiness,
    pub ids: Arc<RequestIds>,
}

/// The routes, as `docs/openapi.yaml` documents them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/v1/tenants"),
    ("get", "/v1/tenants/{id}"),
    ("put", "/v1/tenants/{id}"),
    ("delete", "/v1/tenants/{id}"),
    ("post", "/v1/explain"),
    ("get", "/v1/audit"),
    ("get", "/v1/export"),
    ("get", "/v1/fleet"),
];

const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Expensive calls (a list page, an audit read, an export) served at once; more are answered
/// `429 busy`. Each scans the whole registry or the audit log, and an export holds its
/// permit until its last byte is sent. A constant: enough for people and scripts, and it
/// keeps a burst of exports from taking every core and blocking thread.
const MAX_EXPENSIVE_CALLS: usize = 4;

/// The API as served: the [`Admin`] and what guards it against abuse.
pub struct Api {
    admin: Arc<Admin>,
    /// Refused calls: rate limit and aggregate audit ([`refusals`]).
    refusals: std::sync::Mutex<refusals::Refusals>,
    expensive: Arc<tokio::sync::Semaphore>,
    /// The refusal policy's clock: time since this instant.
    started: std::time::Instant,
}

impl std::ops::Deref for Api {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.admin
    }
}

impl Api {
    pub fn new(admin: Arc<Admin>) -> Self {
        Api {
            admin,
            refusals: std::sync::Mutex::new(refusals::Refusals::new(refusals::LIMITS)),
            expensive: Arc::new(tokio::sync::Semaphore::new(MAX_EXPENSIVE_CALLS)),
            started: std::time::Instant::now(),
        }
    }
}

/// The routes, served by the binary's admin listener.
pub fn routes(api: Arc<Api>) -> axum::Router {
    axum::Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route(
            "/v1/tenants",
            get(handle(Action::ListTenants, list_tenants)),
        )
        .route(
            "/v1/tenants/{id}",
            get(handle(Action::ReadTenant, get_tenant))
                .put(handle(Action::ChangeTenant, put_tenant))
                .delete(handle(Action::DeleteTenant, delete_tenant)),
        )
        .route("/v1/explain", post(handle(Action::Explain, explain)))
        .route("/v1/audit", get(handle(Action::ReadAudit, read_audit)))
        .route("/v1/export", get(handle(Action::Export, export)))
        .route("/v1/fleet", get(handle(Action::ReadFleet, read_fleet)))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; the API is described in docs/openapi.yaml",
            )
            .into_response()
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see docs/openapi.yaml",
            )
            .into_response()
        })
        .with_state(api)
}

/// An error answer: `{"error": code, "message": ..., "request_id": ..., ...context}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    context: serde_json::Map<String, Value>,
    /// Seconds for `Retry-After` (429).
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            context: serde_json::Map::new(),
            retry_after_s: None,
        }
    }

    /// `429` with `Retry-After`: `code` says what to wait for.
    fn too_many(code: &'static str, message: impl Into<String>, retry_after_s: u64) -> Self {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            .with("retry_after_s", retry_after_s);
        e.retry_after_s = Some(retry_after_s);
        e
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.context.insert(key.to_owned(), value.into());
        self
    }

    fn tenant(error: residency_config::TenantError) -> Self {
        let mut e = ApiError::bad_request(error.code(), format!("{error}; fix: {}", error.fix()))
            .with("field", error.field().trim_start_matches('.'));
        if let residency_config::TenantError::UnknownRegion { valid, .. } = &error {
            e = e.with("valid_regions", valid.clone());
        }
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.context;
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// One API call: what the handlers read, gathered before they run on a blocking thread
/// (audit entries and registry changes are fsynced).
pub struct Call {
    headers: HeaderMap,
    query: String,
    /// The `{id}` path segment, percent-decoded.
    id: Option<String>,
    /// `None` when the body was larger than `admin.max_body_bytes` (or unreadable).
    body: Option<Bytes>,
    source: SocketAddr,
    request_id: String,
}

type Handler = fn(&Api, &Call) -> Result<Response, ApiError>;

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;
type PathParams = Result<RawPathParams, RawPathParamsRejection>;

/// Adapts a blocking handler to axum: gathers the call, turns away a caller without a valid
/// token before reading its body or taking a blocking thread, runs the handler on a blocking
/// thread, adds `x-request-id`. `action` is what a refused caller is audited as asking for.
fn handle(
    action: Action,
    handler: Handler,
) -> impl Fn(State<Arc<Api>>, ConnectInfo<SocketAddr>, PathParams, Request) -> Answer
       + Clone
       + Send
       + Sync
       + 'static {
    move |State(api), ConnectInfo(source), params, request| {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let request_id = api
                .ids
                .for_request(parts.headers.get("x-request-id"))
                .as_str()
                .to_owned();
            let mut call = Call {
                headers: parts.headers,
                query: parts.uri.query().unwrap_or_default().to_owned(),
                id: params.ok().and_then(|p| {
                    p.iter()
                        .find(|(k, _)| *k == "id")
                        .map(|(_, v)| v.to_owned())
                }),
                body: None,
                source,
                request_id,
            };
            let request_id = call.request_id.clone();
            let mut response = match api.turn_away(&call, action).await {
                Some(error) => error
                    .with("request_id", request_id.as_str())
                    .into_response(),
                None => {
                    call.body = axum::body::to_bytes(body, api.max_body_bytes()).await.ok();
                    let answered = tokio::task::spawn_blocking(move || handler(&api, &call)).await;
                    match answered {
                        Ok(Ok(response)) => response,
                        Ok(Err(error)) => error
                            .with("request_id", request_id.as_str())
                            .into_response(),
                        Err(panic) => {
                            tracing::error!(error = %panic, "admin handler failed");
                            ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal",
                                "the call failed; nothing was changed unless the audit log says so",
                            )
                            .into_response()
                        }
                    }
                }
            };
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-request-id", id);
            }
            response
        })
    }
}

async fn livez() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(admin): State<Arc<Api>>) -> Response {
    let state = admin.state.load();
    if !state.snapshot.registry_status.loaded {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no tenant registry yet: etcd is unreachable and there is no valid local cache",
        )
        .into_response();
    }
    if admin.readiness.is_ready() {
        axum::Json(json!({
            "status": "ready",
            "generation": state.generation,
            "tenants": state.snapshot.registry.len(),
        }))
        .into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the first round of health checks has not finished",
        )
        .into_response()
    }
}

impl Admin {
    /// `admin.max_body_bytes` of the live configuration.
    fn max_body_bytes(&self) -> usize {
        let state = self.state.load();
        state
            .snapshot
            .admin
            .as_ref()
            .map_or(0, |a| a.max_body_bytes)
    }
}

/// A refused call's answer and the audit entries it leads to.
struct Refused {
    answer: ApiError,
    /// This call, audited on its own (the first refusal of a quiet source).
    entry: Option<Entry>,
    /// Aggregates of other intervals that ended meanwhile.
    aggregates: Vec<Entry>,
}

impl Api {
    /// The caller's token, allowed to do `action` (on `tenant`). Refusals are audited.
    fn authorize(
        &self,
        call: &Call,
        state: &RouterState,
        action: Action,
        tenant: Option<&TenantId>,
    ) -> Result<AdminToken, ApiError> {
        let token = self.authenticate(call, state, action)?;
        self.permit(call, &token, action, tenant)?;
        Ok(token)
    }

    /// The configured token the caller presented, or why not: the 401 and the actor to audit.
    fn token(
        &self,
        call: &Call,
        state: &RouterState,
    ) -> Result<AdminToken, (ApiError, &'static str)> {
        let tokens = state
            .snapshot
            .admin
            .as_ref()
            .map_or(&[][..], |a| &a.tokens[..]);
        let presented = call
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let (message, actor) = match auth::authenticate(presented, tokens) {
            Ok(token) => return Ok(token.clone()),
            Err(auth::AuthError::Missing) => {
                ("send `Authorization: Bearer <token>`", "(anonymous)")
            }
            Err(auth::AuthError::Invalid) => ("the bearer token is not valid", "(invalid token)"),
        };
        Err((
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
            actor,
        ))
    }

    /// The refusal of an unauthenticated call: 401 (or 429), and what to audit.
    fn unauthenticated(
        &self,
        call: &Call,
        error: ApiError,
        actor: &str,
        action: Action,
    ) -> Refused {
        // Only a well-formed id is recorded: an anonymous caller does not get to write
        // arbitrary text into a log that is kept for years.
        let tenant = call
            .id
            .as_deref()
            .filter(|id| residency_config::tenant_id(id).is_ok());
        self.refuse(call, error, actor, None, action, tenant)
    }

    /// Before the body is read or a blocking thread taken: the answer for a caller without a
    /// valid token, `None` for everyone else. Most refusals of a flood are answered from
    /// memory here; only the few the policy audits wait for an fsync.
    async fn turn_away(self: &Arc<Self>, call: &Call, action: Action) -> Option<ApiError> {
        let (error, actor) = self.token(call, &self.state.load()).err()?;
        let refused = self.unauthenticated(call, error, actor, action);
        if refused.entry.is_none() && refused.aggregates.is_empty() {
            return Some(refused.answer);
        }
        let api = Arc::clone(self);
        let request_id = call.request_id.clone();
        let written =
            tokio::task::spawn_blocking(move || api.write_refused(&request_id, refused)).await;
        Some(written.unwrap_or_else(|panic| {
            tracing::error!(error = %panic, "auditing a refused call failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the call failed; nothing was changed",
            )
        }))
    }

    /// The configured token the caller presented; a missing or unknown one is audited and
    /// refused with 401 before anything else about the call is looked at.
    fn authenticate(
        &self,
        call: &Call,
        state: &RouterState,
        action: Action,
    ) -> Result<AdminToken, ApiError> {
        let (error, actor) = match self.token(call, state) {
            Ok(token) => return Ok(token),
            Err(refusal) => refusal,
        };
        let refused = self.unauthenticated(call, error, actor, action);
        Err(self.write_refused(&call.request_id, refused))
    }

    /// Refuses (403, audited) what the token's role or scope does not allow.
    fn permit(
        &self,
        call: &Call,
        token: &AdminToken,
        action: Action,
        tenant: Option<&TenantId>,
    ) -> Result<(), ApiError> {
        if auth::allows(token, action, tenant) {
            return Ok(());
        }
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the `{}` role may not {}",
                token.role.as_str(),
                describe(action, tenant)
            ),
        )
        .with("role", token.role.as_str());
        let tenant = tenant.map(TenantId::as_str);
        let refused = self.refuse(
            call,
            error,
            &token.name,
            Some(token.role.as_str()),
            action,
            tenant,
        );
        Err(self.write_refused(&call.request_id, refused))
    }

    /// The refusal policy's time.
    fn now(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Asks the refusal policy about one refused call.
    fn refuse(
        &self,
        call: &Call,
        error: ApiError,
        actor: &str,
        role: Option<&str>,
        action: Action,
        tenant: Option<&str>,
    ) -> Refused {
        let refusal = refusals::Refusal {
            status: error.status.as_u16(),
            actor,
            action: action.as_str(),
            tenant,
            request_id: &call.request_id,
        };
        let (verdict, closed) = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refuse(self.now(), call.source.ip(), &refusal);
        let entry = (verdict == refusals::Verdict::AuditNow).then(|| Entry {
            actor: actor.to_owned(),
            role: role.map(str::to_owned),
            action: action.as_str().to_owned(),
            tenant: tenant.map(str::to_owned),
            outcome: "denied".to_owned(),
            status: error.status.as_u16(),
            ..blank_entry(call)
        });
        let answer = match verdict {
            refusals::Verdict::Limited { retry_after_s } => ApiError::too_many(
                "rate_limited",
                format!("too many refused calls from your address; retry in {retry_after_s} s with a valid token"),
                retry_after_s,
            ),
            _ => error,
        };
        Refused {
            answer,
            entry,
            aggregates: closed
                .into_iter()
                .map(|a| self.aggregate_entry(a))
                .collect(),
        }
    }

    /// The audit entry of an aggregate.
    fn aggregate_entry(&self, aggregate: refusals::Aggregate) -> Entry {
        let wall = |at: std::time::Duration| {
            let ago = self.now().saturating_sub(at);
            (time::OffsetDateTime::now_utc() - ago)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let several = || "(several)".to_owned();
        Entry {
            actor: aggregate.actor.unwrap_or_else(several),
            role: None,
            source: aggregate.source.to_string(),
            action: aggregate.action.unwrap_or_else(several),
            tenant: aggregate.tenant,
            outcome: "denied".to_owned(),
            status: aggregate.statuses.keys().max().copied().unwrap_or(401),
            request_id: aggregate.last_request_id,
            count: Some(aggregate.count),
            since: Some(wall(aggregate.since)),
            statuses: Some(
                aggregate
                    .statuses
                    .iter()
                    .map(|(status, n)| (status.to_string(), *n))
                    .collect(),
            ),
            ..Entry::default()
        }
    }

    /// Writes what a refusal audits (blocking); the answer to send. A log that cannot take
    /// the call's own entry refuses with 503, as for every other audited call.
    fn write_refused(&self, request_id: &str, refused: Refused) -> ApiError {
        self.write_aggregates(refused.aggregates);
        match refused.entry {
            Some(entry) => match self.record(request_id, entry) {
                Ok(_) => refused.answer,
                Err(e) => e,
            },
            None => refused.answer,
        }
    }

    /// Audits aggregates of refused calls (blocking). Counts that cannot be written are
    /// logged: the calls they count were answered already.
    fn write_aggregates(&self, aggregates: Vec<Entry>) {
        for entry in aggregates {
            if let Err(e) = self.audit.append(entry.clone()) {
                tracing::error!(error = %e, source = %entry.source, count = ?entry.count, "cannot audit refused calls");
            }
        }
    }

    /// Audits the aggregates whose interval ended, or all of them `at_shutdown` (blocking).
    pub fn audit_due_refusals(&self, at_shutdown: bool) {
        let closed = {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if at_shutdown {
                refusals.drain(self.now())
            } else {
                refusals.due(self.now())
            }
        };
        let entries = closed
            .into_iter()
            .map(|a| self.aggregate_entry(a))
            .collect();
        self.write_aggregates(entries);
    }

    /// A permit for an expensive call, or `429 busy`.
    fn expensive(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.expensive).try_acquire_owned().map_err(|_| {
            ApiError::too_many(
                "busy",
                format!("{MAX_EXPENSIVE_CALLS} list, audit or export calls are being served; retry in a second"),
                1,
            )
        })
    }
}

impl Admin {
    /// Appends to the audit log; a log that cannot be written refuses the call.
    fn record(&self, request_id: &str, entry: Entry) -> Result<Entry, ApiError> {
        self.audit.append(entry).map_err(|e| {
            tracing::error!(error = %e, audit = %self.audit.location(), %request_id, "cannot write the audit log");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "the audit log cannot be written; nothing was changed")
        })
    }
}

fn describe(action: Action, tenant: Option<&TenantId>) -> String {
    let what = match action {
        Action::ListTenants => "list tenants",
        Action::ReadTenant => "read tenant",
        Action::ChangeTenant => "change tenant",
        Action::CreateTenant => "create tenant",
        Action::DeleteTenant => "delete tenant",
        Action::Explain => "explain decisions",
        Action::ReadAudit => "read the audit log",
        Action::Export => "export the registry",
        Action::ReadFleet => "read the fleet's state",
    };
    match tenant {
        Some(t) => format!("{what} `{t}`"),
        None => what.to_owned(),
    }
}

/// An entry of this call: who else and what are filled in by the caller.
fn blank_entry(call: &Call) -> Entry {
    Entry {
        source: call.source.to_string(),
        request_id: call.request_id.clone(),
        ..Entry::default()
    }
}

/// The audit entry of a change about to be made, `before` and `after` as the API shows them.
fn applied_entry(
    call: &Call,
    token: &AdminToken,
    action: Action,
    id: &TenantId,
    status: StatusCode,
    before: Option<Value>,
    after: Option<Value>,
) -> Entry {
    Entry {
        actor: token.name.clone(),
        role: Some(token.role.as_str().to_owned()),
        action: action.as_str().to_owned(),
        tenant: Some(id.as_str().to_owned()),
        outcome: "applied".to_owned(),
        status: status.as_u16(),
        before,
        after,
        ..blank_entry(call)
    }
}

fn path_tenant(call: &Call) -> Result<TenantId, ApiError> {
    let raw = call.id.as_deref().unwrap_or_default();
    residency_config::tenant_id(raw).map_err(ApiError::tenant)
}

/// Query parameters into `T` (`deny_unknown_fields`), or a 400 naming the problem.
fn query<T: serde::de::DeserializeOwned>(call: &Call) -> Result<T, ApiError> {
    serde_urlencoded::from_str(&call.query)
        .map_err(|e| ApiError::bad_request("invalid_query", format!("query string: {e}")))
}

/// The body as JSON into `T` (`deny_unknown_fields`), after the content-type and size checks.
fn json_body<'c, T: Deserialize<'c>>(admin: &Admin, call: &'c Call) -> Result<T, ApiError> {
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send `Content-Type: application/json` (got `{content_type}`)"),
        ));
    }
    let Some(body) = &call.body else {
        let limit = admin.max_body_bytes();
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than admin.max_body_bytes ({limit} bytes)"),
        )
        .with("limit_bytes", limit));
    };
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        let field = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        match field {
            Some(field) => {
                ApiError::bad_request("unknown_field", format!("unknown field `{field}`"))
                    .with("field", field)
            }
            None => ApiError::bad_request("invalid_json", message),
        }
    })
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

fn view_json(id: &str, record: &TenantRecord, state: &RouterState) -> Value {
    serde_json::to_value(TenantView::new(id, record, &state.snapshot.topology))
        .expect("tenant views serialize")
}

/// A strong tag of the tenant's settings: equal settings, equal tag, across restarts.
fn etag(view: &Value) -> String {
    let digest = Sha256::digest(view.to_string().as_bytes());
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// `If-Match`: `None` when absent; otherwise whether `current` satisfies it.
fn if_match(call: &Call, current: Option<&str>) -> Option<bool> {
    let header = call
        .headers
        .get(header::IF_MATCH)?
        .to_str()
        .unwrap_or_default();
    Some(header.split(',').map(str::trim).any(|tag| match current {
        Some(current) => tag == "*" || tag == current,
        None => false,
    }))
}

/// `412` when `If-Match` is sent and `current` (the tenant's `ETag`, if it exists) is not in it.
fn check_if_match(call: &Call, id: &TenantId, current: Option<&str>) -> Result<(), ApiError> {
    if if_match(call, current) == Some(false) {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the tenant changed since you read it (If-Match does not match its ETag); read it again",
        )
        .with("tenant", id.as_str()));
    }
    Ok(())
}

/// A tenant's settings with their `ETag`.
fn tenant_response(status: StatusCode, view: &Value) -> Response {
    let mut response = json_response(status, view);
    if let Ok(value) = HeaderValue::from_str(&etag(view)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    region: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit {n} is out of range; use 1 to {MAX_PAGE}"),
        )),
    }
}

/// The `limit` smallest ids of `items`, sorted, and whether more follow. Keeps a max-heap of
/// `limit + 1` entries, so a page of a million-tenant registry holds a page, not the registry.
fn first_page<'a, T>(
    items: impl Iterator<Item = (&'a str, T)>,
    limit: usize,
) -> (Vec<(&'a str, T)>, bool) {
    struct ById<'a, T>(&'a str, T);
    impl<T> PartialEq for ById<'_, T> {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }
    impl<T> Eq for ById<'_, T> {}
    impl<T> PartialOrd for ById<'_, T> {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl<T> Ord for ById<'_, T> {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.cmp(other.0)
        }
    }
    let mut smallest = std::collections::BinaryHeap::with_capacity(limit + 1);
    for (id, item) in items {
        if smallest.len() <= limit {
            smallest.push(ById(id, item));
        } else if smallest.peek().is_some_and(|largest| id < largest.0) {
            smallest.pop();
            smallest.push(ById(id, item));
        }
    }
    let more = smallest.len() > limit;
    let mut page: Vec<(&'a str, T)> = smallest
        .into_sorted_vec()
        .into_iter()
        .map(|ById(id, item)| (id, item))
        .collect();
    page.truncate(limit);
    (page, more)
}

fn list_tenants(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = admin.authorize(call, &state, Action::ListTenants, None)?;
    let q: ListQuery = query(call)?;
    let limit = page_size(q.limit)?;
    let topology = &state.snapshot.topology;
    let region = match &q.region {
        None => None,
        Some(name) => Some(topology.region_by_name(name).ok_or_else(|| {
            let valid: Vec<String> = topology.regions().map(|(_, r)| r.name.clone()).collect();
            ApiError::bad_request(
                "unknown_region",
                format!(
                    "region `{name}` is not defined; use one of: {}",
                    valid.join(", ")
                ),
            )
            .with("valid_regions", valid)
        })?),
    };
    let cursor = q.cursor.as_deref().unwrap_or("");
    let _permit = admin.expensive()?;
    let (matching, more) = first_page(
        state.snapshot.registry.iter().filter(|(id, record)| {
            *id > cursor && region.is_none_or(|r| record.home == r) && auth::sees(&token, id)
        }),
        limit,
    );
    let tenants: Vec<Value> = matching
        .iter()
        .map(|(id, r)| view_json(id, r, &state))
        .collect();
    let next = more.then(|| matching.last().map(|(id, _)| *id)).flatten();
    Ok(json_response(
        StatusCode::OK,
        &json!({"tenants": tenants, "next_cursor": next}),
    ))
}

fn get_tenant(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = admin.authenticate(call, &state, Action::ReadTenant)?;
    let id = path_tenant(call)?;
    admin.permit(call, &token, Action::ReadTenant, Some(&id))?;
    if let Some(fleet) = &admin.fleet {
        // The store's copy, with its revision as the ETag: what a write's If-Match is
        // compared with, on whichever router it arrives.
        let stored = fleet.read_tenant(&id).map_err(registry_unavailable)?;
        let stored = stored.ok_or_else(|| unknown(&id))?;
        let view = stored_view(&id, &stored, &state)?;
        return Ok(fleet_tenant_response(
            StatusCode::OK,
            &view,
            stored.mod_revision,
        ));
    }
    let record = state
        .snapshot
        .registry
        .get(&id)
        .ok_or_else(|| unknown(&id))?;
    let view = view_json(id.as_str(), &record, &state);
    Ok(tenant_response(StatusCode::OK, &view))
}

fn unknown(id: &TenantId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_tenant",
        format!("tenant `{id}` is not in the registry"),
    )
    .with("tenant", id.as_str())
}

/// `PUT /v1/tenants/{id}` body: the tenant's whole residency setting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody<'a> {
    #[serde(borrow)]
    region: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    replication: Option<residency_config::file::ReplicationFile<'a>>,
}

fn put_tenant(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = admin.authenticate(call, &state, Action::ChangeTenant)?;
    let id = path_tenant(call)?;
    // Checked again under the lock, where existence is settled.
    let action = match state.snapshot.registry.get(&id) {
        Some(_) => Action::ChangeTenant,
        None => Action::CreateTenant,
    };
    admin.permit(call, &token, action, Some(&id))?;
    let body: TenantBody<'_> = json_body(admin, call)?;
    // Checked here for a prompt answer, and again against the state the change applies to.
    desired_record(&body, &state)?;
    change(admin, call, id, |state| {
        desired_record(&body, state).map(Some)
    })
}

/// The record a PUT body asks for, against `state`'s regions.
fn desired_record(body: &TenantBody<'_>, state: &RouterState) -> Result<TenantRecord, ApiError> {
    let topology = &state.snapshot.topology;
    let record = residency_config::tenant_record(&body.region, body.replication.as_ref(), topology)
        .map_err(|errors| {
            let all: Vec<Value> = errors
                .iter()
                .map(|e| json!({"error": e.code(), "field": e.field().trim_start_matches('.'), "message": e.to_string()}))
                .collect();
            ApiError::tenant(errors[0].clone()).with("problems", all)
        })?;
    if let Some(expiry) = record.replication.and_then(|r| r.expires_at) {
        if expiry <= state.clock.unix_now() {
            return Err(ApiError::bad_request(
                "expiry_in_past",
                format!(
                    "replication.expires_at {} is not in the future",
                    residency_config::rfc3339(expiry)
                ),
            )
            .with("field", "replication.expires_at"));
        }
    }
    Ok(record)
}

fn delete_tenant(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = admin.authenticate(call, &state, Action::DeleteTenant)?;
    let id = path_tenant(call)?;
    admin.permit(call, &token, Action::DeleteTenant, Some(&id))?;
    change(admin, call, id, |_| Ok(None))
}

/// What a write does to a tenant that `existed` and will or will not exist, and the status
/// that answers it.
fn change_kind(
    id: &TenantId,
    existed: bool,
    exists: bool,
) -> Result<(Action, StatusCode), ApiError> {
    match (existed, exists) {
        (false, false) => Err(unknown(id)),
        (false, true) => Ok((Action::CreateTenant, StatusCode::CREATED)),
        (true, true) => Ok((Action::ChangeTenant, StatusCode::OK)),
        (true, false) => Ok((Action::DeleteTenant, StatusCode::NO_CONTENT)),
    }
}

/// `?wait=applied` on a write: answer once every live router applies the change.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WriteQuery {
    wait: Option<String>,
    timeout_ms: Option<u64>,
}

/// How long `?wait=applied` waits by default, and at most.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_WAIT_MS: u64 = 60_000;
/// How long a write waits for this router to apply it, so that the caller's next request
/// here sees it (read-your-writes through one router).
const LOCAL_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Writes retried after another router's concurrent audit entry moved the chain's head.
const MAX_COMMIT_ATTEMPTS: usize = 8;

fn registry_unavailable(e: Unavailable) -> ApiError {
    tracing::warn!(error = %e, "registry store unavailable");
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "registry_unavailable",
        "the registry store (etcd) has no quorum or cannot be reached; nothing was changed, retry",
    )
    .with("retry_after_s", 1);
    error.retry_after_s = Some(1);
    error
}

/// A stored record as the API shows it; a record the store holds but this router cannot
/// read (a region it does not know) is reported, not guessed at.
fn stored_view(
    id: &TenantId,
    stored: &StoredTenant,
    state: &RouterState,
) -> Result<Value, ApiError> {
    let topology = &state.snapshot.topology;
    let (_, record) = residency_config::tenant_from_json(id.as_str(), &stored.json, topology)
        .map_err(|problem| {
            ApiError::new(
                StatusCode::CONFLICT,
                "invalid_stored_record",
                format!("the registry store holds a record for `{id}` this router cannot use ({problem}); write the tenant again"),
            )
            .with("tenant", id.as_str())
        })?;
    Ok(view_json(id.as_str(), &record, state))
}

fn fleet_etag(mod_revision: i64) -> String {
    format!("\"{mod_revision}\"")
}

fn fleet_tenant_response(status: StatusCode, view: &Value, mod_revision: i64) -> Response {
    let mut response = json_response(status, view);
    if let Ok(value) = HeaderValue::from_str(&fleet_etag(mod_revision)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `?wait=applied[&timeout_ms=N]`: how long to wait for every router, if at all.
fn wait_for_fleet(call: &Call) -> Result<Option<std::time::Duration>, ApiError> {
    let wait: WriteQuery = query(call)?;
    match wait.wait.as_deref() {
        None => Ok(None),
        Some("applied") => match wait.timeout_ms {
            None => Ok(Some(DEFAULT_WAIT)),
            Some(ms) if (1..=MAX_WAIT_MS).contains(&ms) => {
                Ok(Some(std::time::Duration::from_millis(ms)))
            }
            Some(ms) => Err(ApiError::bad_request(
                "invalid_query",
                format!("timeout_ms {ms} is out of range; use 1 to {MAX_WAIT_MS}"),
            )
            .with("field", "timeout_ms")),
        },
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("wait `{other}` is not supported; use `wait=applied`"),
        )
        .with("field", "wait")),
    }
}

/// The fleet-mode write path: read the tenant from the store, check the caller's If-Match
/// against its revision, then write it and its audit entry in one compare-and-swap
/// transaction. Another router's write in between fails the compare, and the loop reads
/// again: with If-Match that is a 412, without it the change applies to the new record.
fn fleet_change(
    admin: &Api,
    call: &Call,
    fleet: &dyn FleetRegistry,
    id: TenantId,
    wait_all: Option<std::time::Duration>,
    after: impl FnOnce(&RouterState) -> Result<Option<TenantRecord>, ApiError>,
) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = &admin.authenticate(call, &state, Action::ChangeTenant)?;
    let after = after(&state)?;
    let after_view = after.map(|r| view_json(id.as_str(), &r, &state));
    for _ in 0..MAX_COMMIT_ATTEMPTS {
        let stored = fleet.read_tenant(&id).map_err(registry_unavailable)?;
        let before_view = match &stored {
            Some(stored) => Some(stored_view(&id, stored, &state)?),
            None => None,
        };
        let (action, status) = change_kind(&id, before_view.is_some(), after.is_some())?;
        admin.permit(call, token, action, Some(&id))?;
        let current_tag = stored.as_ref().map(|s| fleet_etag(s.mod_revision));
        check_if_match(call, &id, current_tag.as_deref())?;
        if before_view == after_view {
            let (view, stored) = after_view.zip(stored).expect("an unchanged tenant exists");
            return Ok(fleet_tenant_response(
                StatusCode::OK,
                &view,
                stored.mod_revision,
            ));
        }
        let entry = applied_entry(
            call,
            token,
            action,
            &id,
            status,
            before_view,
            after_view.clone(),
        );
        let write = TenantWrite {
            id,
            expected_mod_revision: stored.as_ref().map_or(0, |s| s.mod_revision),
            json: after
                .map(|r| residency_config::tenant_json(id.as_str(), &r, &state.snapshot.topology)),
            entry,
        };
        let committed = match fleet.commit(write) {
            Ok(committed) => committed,
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Unavailable(e)) => return Err(registry_unavailable(e)),
        };
        let revision = committed.revision;
        tracing::info!(tenant = %id, actor = %token.name, action = action.as_str(), revision, "registry changed through the admin API");
        if !fleet.wait_applied_here(revision, LOCAL_APPLY_WAIT) {
            tracing::warn!(revision, "this router has not applied its own write yet");
        }
        let pending = |routers: Vec<String>, message: &str| {
            json_response(
                StatusCode::ACCEPTED,
                &json!({"revision": revision, "applied": false, "pending_routers": routers, "message": message}),
            )
        };
        let mut response = match wait_all.map(|timeout| fleet.wait_applied_everywhere(revision, timeout)) {
            None => fleet_write_answer(status, after_view.as_ref(), revision, &id),
            Some(Ok(lagging)) if lagging.is_empty() => fleet_write_answer(status, after_view.as_ref(), revision, &id),
            Some(Ok(lagging)) => pending(lagging, "the change is stored and audited; these live routers have not applied it yet"),
            // Committed: never answered as if nothing had changed.
            Some(Err(e)) => pending(Vec::new(), &format!("the change is stored and audited, but which routers applied it cannot be read now ({e}); see GET /v1/fleet")),
        };
        response
            .headers_mut()
            .insert("x-registry-revision", HeaderValue::from(revision));
        return Ok(response);
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "concurrent_changes",
        "other routers kept changing the registry while this change was retried; retry",
    ))
}

fn fleet_write_answer(
    status: StatusCode,
    view: Option<&Value>,
    revision: i64,
    id: &TenantId,
) -> Response {
    match view {
        None => status.into_response(),
        Some(view) => with_location(fleet_tenant_response(status, view, revision), status, id),
    }
}

/// A created tenant's answer says where it lives.
fn with_location(mut response: Response, status: StatusCode, id: &TenantId) -> Response {
    if status == StatusCode::CREATED {
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/tenants/{id}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

fn read_fleet(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    admin.authorize(call, &state, Action::ReadFleet, None)?;
    let Some(fleet) = &admin.fleet else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_fleet",
            "this router's registry is a file, not a shared store; see tenancy.registry",
        ));
    };
    let view = fleet.fleet().map_err(registry_unavailable)?;
    Ok(json_response(StatusCode::OK, &view))
}

/// The write path: under the reload lock, against the state it applies to (a reload may
/// have changed regions or tokens since the call arrived), check who asks and what for,
/// then preconditions, audit, store, swap.
fn change(
    admin: &Api,
    call: &Call,
    id: TenantId,
    after: impl FnOnce(&RouterState) -> Result<Option<TenantRecord>, ApiError>,
) -> Result<Response, ApiError> {
    // With a registry file this router is the whole fleet: a change is applied everywhere
    // once it is live here.
    let wait_all = wait_for_fleet(call)?;
    if let Some(fleet) = &admin.fleet {
        return fleet_change(admin, call, fleet.as_ref(), id, wait_all, after);
    }
    let exclusive = admin.writer.lock();
    let state = exclusive.current();
    let token = &admin.authenticate(call, &state, Action::ChangeTenant)?;
    let after = after(&state)?;
    let before = state.snapshot.registry.get(&id);
    let before_view = before.map(|r| view_json(id.as_str(), &r, &state));
    let (action, status) = change_kind(&id, before.is_some(), after.is_some())?;
    // Re-checked now that existence is settled: a tenant-admin changes, never creates.
    admin.permit(call, token, action, Some(&id))?;
    check_if_match(call, &id, before_view.as_ref().map(etag).as_deref())?;
    let after_view = after.map(|r| view_json(id.as_str(), &r, &state));
    if before == after {
        let view = after_view.expect("an unchanged tenant exists");
        return Ok(tenant_response(StatusCode::OK, &view));
    }
    if exclusive.registry_changed_on_disk() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "registry_changed_on_disk",
            "the registry file was edited and that edit is not live yet; reload (SIGHUP or `residency-router reload`), then retry",
        ));
    }
    let entry = applied_entry(
        call,
        token,
        action,
        &id,
        status,
        before_view,
        after_view.clone(),
    );
    let registry = Arc::new(state.snapshot.registry.with_change(&id, after));
    let change = TenantChange { id, after };
    let published = commit::stage_audit_publish(
        || admin.store.stage(&change, &registry, &state.snapshot),
        &*admin.audit,
        entry,
    );
    let durable = match published {
        Ok(commit::Published::Durable) => true,
        Ok(commit::Published::NotDurable(e)) => {
            tracing::error!(error = %e, tenant = %id, "the registry change is in place, but the directory could not be fsynced");
            false
        }
        Err(e @ commit::NotCommitted::Audit(_)) => {
            tracing::error!(error = %e, audit = %admin.audit.location(), request_id = %call.request_id, "cannot write the audit log");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written; nothing was changed",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, tenant = %id, "cannot store the registry change");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the registry could not be stored; nothing was changed",
            ));
        }
    };
    // The registry file holds the change from here on, durable or not: the live state
    // follows the file, so that a reload or a restart cannot bring a different state.
    let generation = exclusive.swap_registry(registry);
    tracing::info!(tenant = %id, actor = %token.name, action = action.as_str(), generation, "registry changed through the admin API");
    if !durable {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_not_durable",
            "the change is in the registry file and live, and audited as applied, but the registry's directory could not be fsynced: a power loss may still undo it; check the disk, then read the tenant again",
        )
        .with("tenant", id.as_str())
        .with("applied", true));
    }
    Ok(match after_view {
        None => status.into_response(),
        Some(view) => with_location(tenant_response(status, &view), status, &id),
    })
}

fn explain(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    admin.authorize(call, &state, Action::Explain, None)?;
    let request: explain::ExplainRequest = json_body(admin, call)?;
    explain::check(&request).map_err(|(field, problem)| {
        ApiError::bad_request("invalid_request", problem).with("field", field)
    })?;
    Ok(json_response(
        StatusCode::OK,
        &explain::explain(&state, &request, state.clock.unix_now()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    tenant: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<u64>,
    limit: Option<usize>,
}

fn read_audit(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    admin.authorize(call, &state, Action::ReadAudit, None)?;
    let q: AuditQuery = query(call)?;
    let limit = page_size(q.limit)?;
    let time = |field: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("{field} `{t}` is not an RFC 3339 time: {e}"),
                        )
                        .with("field", field)
                    })
            })
            .transpose()
    };
    // Sequence numbers are int64 in the API's document; a larger cursor is a client's error.
    let after_seq = match q.cursor {
        Some(cursor) if cursor > i64::MAX as u64 => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("cursor {cursor} is out of range; use 0 to {}", i64::MAX),
            )
            .with("field", "cursor"))
        }
        cursor => cursor.unwrap_or(0),
    };
    let filter = Filter {
        after_seq,
        tenant: q.tenant,
        actor: q.actor,
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
    };
    let _permit = admin.expensive()?;
    let (entries, more) = admin.audit.query(&filter, limit).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("the audit log cannot be read: {e}"),
        )
    })?;
    let next = more
        .then(|| entries.last().and_then(|e| e["seq"].as_u64()))
        .flatten();
    let (head_seq, head) = admin.audit.head().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("the audit log cannot be read: {e}"),
        )
    })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"entries": entries, "next_cursor": next, "head": {"seq": head_seq, "hash": head}}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: Option<String>,
}

fn export(admin: &Api, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    admin.authorize(call, &state, Action::Export, None)?;
    let q: ExportQuery = query(call)?;
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => export::Format::Json,
        "csv" => export::Format::Csv,
        other => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format `{other}` is not supported; use json or csv"),
            )
            .with("field", "format"))
        }
    };
    let permit = admin.expensive()?;
    // A few chunks ahead of the client, no more: the writer waits while the client reads.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        // Held until the last chunk is handed over (or the client is gone).
        let _permit = permit;
        let topology = &state.snapshot.topology;
        export::write(
            format,
            &state.snapshot.registry,
            topology,
            export::CHUNK_BYTES,
            |chunk| chunks.blocking_send(Bytes::from(chunk)).is_ok(),
        );
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        received
            .poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    Ok((
        [(header::CONTENT_TYPE, format.content_type())],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod write_path_tests;

#[cfg(test)]
mod tests {
    use super::first_page;

    #[test]
    fn a_page_is_the_smallest_ids_sorted_and_says_whether_more_follow() {
        let ids = ["m", "c", "x", "a", "q", "b", "z"];
        // (limit, page, more)
        let table: &[(usize, &[&str], bool)] = &[
            (1, &["a"], true),
            (3, &["a", "b", "c"], true),
            (6, &["a", "b", "c", "m", "q", "x"], true),
            (7, &["a", "b", "c", "m", "q", "x", "z"], false),
            (100, &["a", "b", "c", "m", "q", "x", "z"], false),
        ];
        for (limit, want, more) in table {
            let (page, got_more) = first_page(ids.iter().map(|id| (*id, ())), *limit);
            let got: Vec<&str> = page.iter().map(|(id, _)| *id).collect();
            assert_eq!((got.as_slice(), got_more), (*want, *more), "limit {limit}");
        }
        let (page, more) = first_page(std::iter::empty::<(&str, ())>(), 5);
        assert!(page.is_empty() && !more);
    }
}
