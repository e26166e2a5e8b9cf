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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::{AdminToken, RegistryStore, TenantChange, TenantView};
use regions::{TenantId, TenantRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::reload::Reloader;
use crate::state::{RouterState, SharedState};
use audit::{AuditLog, Entry, Filter};
use auth::Action;

/// Everything the API works with.
pub struct Admin {
    pub state: SharedState,
    pub reloader: Arc<Reloader>,
    pub store: Arc<dyn RegistryStore>,
    pub audit: AuditLog,
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
];

const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

pub fn router(admin: Arc<Admin>) -> axum::Router {
    axum::Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/v1/tenants", get(handle(list_tenants)))
        .route(
            "/v1/tenants/{id}",
            get(handle(get_tenant))
                .put(handle(put_tenant))
                .delete(handle(delete_tenant)),
        )
        .route("/v1/explain", post(handle(explain)))
        .route("/v1/audit", get(handle(read_audit)))
        .route("/v1/export", get(handle(export)))
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
        .with_state(admin)
}

/// An error answer: `{"error": code, "message": ..., "request_id": ..., ...context}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    context: serde_json::Map<String, Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            context: serde_json::Map::new(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.context.insert(key.to_owned(), value.into());
        self
    }

    fn tenant(error: config::TenantError) -> Self {
        let mut e = ApiError::bad_request(error.code(), format!("{error}; fix: {}", error.fix()))
            .with("field", error.field().trim_start_matches('.'));
        if let config::TenantError::UnknownRegion { valid, .. } = &error {
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

type Handler = fn(&Admin, &Call) -> Result<Response, ApiError>;

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;
type PathParams = Result<RawPathParams, RawPathParamsRejection>;

/// Adapts a blocking handler to axum: gathers the call, runs it on a blocking thread, adds
/// `x-request-id`.
fn handle(
    handler: Handler,
) -> impl Fn(State<Arc<Admin>>, ConnectInfo<SocketAddr>, PathParams, Request) -> Answer
       + Clone
       + Send
       + Sync
       + 'static {
    move |State(admin), ConnectInfo(source), params, request| {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, admin.max_body_bytes())
                .await
                .ok();
            let request_id =
                crate::request_id::RequestId::for_request(parts.headers.get("x-request-id"))
                    .as_str()
                    .to_owned();
            let call = Call {
                headers: parts.headers,
                query: parts.uri.query().unwrap_or_default().to_owned(),
                id: params.ok().and_then(|p| {
                    p.iter()
                        .find(|(k, _)| *k == "id")
                        .map(|(_, v)| v.to_owned())
                }),
                body,
                source,
                request_id,
            };
            let request_id = call.request_id.clone();
            let answered = tokio::task::spawn_blocking(move || handler(&admin, &call)).await;
            let mut response = match answered {
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

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let state = admin.state.load();
    if crate::health::first_round_done() {
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

    /// The configured token the caller presented; a missing or unknown one is audited and
    /// refused with 401 before anything else about the call is looked at.
    fn authenticate(
        &self,
        call: &Call,
        state: &RouterState,
        action: Action,
    ) -> Result<AdminToken, ApiError> {
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
        let error = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        // Only a well-formed id is recorded: an anonymous caller does not get to write
        // arbitrary text into a log that is kept for years.
        let tenant = call
            .id
            .as_deref()
            .filter(|id| config::tenant_id(id).is_ok());
        self.refused(call, &error, actor, None, action, tenant)?;
        Err(error)
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
        self.refused(
            call,
            &error,
            &token.name,
            Some(token.role.as_str()),
            action,
            tenant,
        )?;
        Err(error)
    }

    fn refused(
        &self,
        call: &Call,
        error: &ApiError,
        actor: &str,
        role: Option<&str>,
        action: Action,
        tenant: Option<&str>,
    ) -> Result<Entry, ApiError> {
        self.record(
            call,
            Entry {
                actor: actor.to_owned(),
                role: role.map(str::to_owned),
                action: action.as_str().to_owned(),
                tenant: tenant.map(str::to_owned),
                outcome: "denied".to_owned(),
                status: error.status.as_u16(),
                ..blank_entry(call)
            },
        )
    }

    /// Appends to the audit log; a log that cannot be written refuses the call.
    fn record(&self, call: &Call, entry: Entry) -> Result<Entry, ApiError> {
        self.audit.append(entry).map_err(|e| {
            tracing::error!(error = %e, path = %self.audit.path().display(), request_id = %call.request_id, "cannot write the audit log");
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

fn path_tenant(call: &Call) -> Result<TenantId, ApiError> {
    let raw = call.id.as_deref().unwrap_or_default();
    config::tenant_id(raw).map_err(ApiError::tenant)
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

fn list_tenants(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
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
    let mut matching: Vec<(&str, TenantRecord)> = state
        .snapshot
        .registry
        .iter()
        .filter(|(id, record)| {
            *id > cursor && region.is_none_or(|r| record.home == r) && auth::sees(&token, id)
        })
        .collect();
    // The smallest `limit` ids, sorted: a page without sorting the whole registry.
    let more = matching.len() > limit;
    if more {
        matching.select_nth_unstable_by_key(limit, |(id, _)| *id);
        matching.truncate(limit);
    }
    matching.sort_unstable_by_key(|(id, _)| *id);
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

fn get_tenant(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = admin.authenticate(call, &state, Action::ReadTenant)?;
    let id = path_tenant(call)?;
    admin.permit(call, &token, Action::ReadTenant, Some(&id))?;
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
    replication: Option<config::file::ReplicationFile<'a>>,
}

fn put_tenant(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
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
    let record = config::tenant_record(&body.region, body.replication.as_ref(), topology)
        .map_err(|errors| {
            let all: Vec<Value> = errors
                .iter()
                .map(|e| json!({"error": e.code(), "field": e.field().trim_start_matches('.'), "message": e.to_string()}))
                .collect();
            ApiError::tenant(errors[0].clone()).with("problems", all)
        })?;
    if let Some(expiry) = record.replication.and_then(|r| r.expires_at) {
        if expiry <= crate::clock::unix_now() {
            return Err(ApiError::bad_request(
                "expiry_in_past",
                format!(
                    "replication.expires_at {} is not in the future",
                    config::rfc3339(expiry)
                ),
            )
            .with("field", "replication.expires_at"));
        }
    }
    Ok(record)
}

fn delete_tenant(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    let token = admin.authenticate(call, &state, Action::DeleteTenant)?;
    let id = path_tenant(call)?;
    admin.permit(call, &token, Action::DeleteTenant, Some(&id))?;
    change(admin, call, id, |_| Ok(None))
}

/// The write path: under the reload lock, against the state it applies to (a reload may
/// have changed regions or tokens since the call arrived), check who asks and what for,
/// then preconditions, audit, store, swap.
fn change(
    admin: &Admin,
    call: &Call,
    id: TenantId,
    after: impl FnOnce(&RouterState) -> Result<Option<TenantRecord>, ApiError>,
) -> Result<Response, ApiError> {
    let exclusive = admin.reloader.exclusive();
    let state = exclusive.current();
    let token = &admin.authenticate(call, &state, Action::ChangeTenant)?;
    let after = after(&state)?;
    let before = state.snapshot.registry.get(&id);
    let before_view = before.map(|r| view_json(id.as_str(), &r, &state));
    let action = match (before, after) {
        (None, None) => return Err(unknown(&id)),
        (None, Some(_)) => Action::CreateTenant,
        (Some(_), Some(_)) => Action::ChangeTenant,
        (Some(_), None) => Action::DeleteTenant,
    };
    let status = match action {
        Action::CreateTenant => StatusCode::CREATED,
        Action::DeleteTenant => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    };
    // Re-checked now that existence is settled: a tenant-admin changes, never creates.
    admin.permit(call, token, action, Some(&id))?;
    if if_match(call, before_view.as_ref().map(etag).as_deref()) == Some(false) {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the tenant changed since you read it (If-Match does not match its ETag); read it again",
        )
        .with("tenant", id.as_str()));
    }
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
    let entry = Entry {
        actor: token.name.clone(),
        role: Some(token.role.as_str().to_owned()),
        action: action.as_str().to_owned(),
        tenant: Some(id.as_str().to_owned()),
        outcome: "applied".to_owned(),
        status: status.as_u16(),
        before: before_view,
        after: after_view.clone(),
        ..blank_entry(call)
    };
    let registry = Arc::new(state.snapshot.registry.with_change(&id, after));
    let change = TenantChange { id, after };
    let published = commit::stage_audit_publish(
        || admin.store.stage(&change, &registry, &state.snapshot),
        &admin.audit,
        entry,
    );
    let durable = match published {
        Ok(commit::Published::Durable) => true,
        Ok(commit::Published::NotDurable(e)) => {
            tracing::error!(error = %e, tenant = %id, "the registry change is in place, but the directory could not be fsynced");
            false
        }
        Err(e @ commit::NotCommitted::Audit(_)) => {
            tracing::error!(error = %e, path = %admin.audit.path().display(), request_id = %call.request_id, "cannot write the audit log");
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
        Some(view) => {
            let mut response = tenant_response(status, &view);
            if status == StatusCode::CREATED {
                if let Ok(location) = HeaderValue::from_str(&format!("/v1/tenants/{id}")) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
            }
            response
        }
    })
}

fn explain(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    admin.authorize(call, &state, Action::Explain, None)?;
    let request: explain::ExplainRequest = json_body(admin, call)?;
    explain::check(&request).map_err(|(field, problem)| {
        ApiError::bad_request("invalid_request", problem).with("field", field)
    })?;
    Ok(json_response(
        StatusCode::OK,
        &explain::explain(&state, &request, crate::clock::unix_now()),
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

fn read_audit(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
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
    let filter = Filter {
        after_seq: q.cursor.unwrap_or(0),
        tenant: q.tenant,
        actor: q.actor,
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
    };
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
    let (head_seq, head) = admin.audit.head();
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

fn export(admin: &Admin, call: &Call) -> Result<Response, ApiError> {
    let state = admin.state.load_full();
    admin.authorize(call, &state, Action::Export, None)?;
    let q: ExportQuery = query(call)?;
    let topology = &state.snapshot.topology;
    let (content_type, body) = match q.format.as_deref().unwrap_or("json") {
        "json" => (
            "application/json",
            config::registry_json(&state.snapshot.registry, topology),
        ),
        "csv" => ("text/csv; charset=utf-8", registry_csv(&state)),
        other => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format `{other}` is not supported; use json or csv"),
            )
            .with("field", "format"))
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from(body)).into_response())
}

/// One row per tenant, sorted by id; replica regions joined with `;` (names never hold one).
fn registry_csv(state: &RouterState) -> Vec<u8> {
    let topology = &state.snapshot.topology;
    let tenants = state.snapshot.registry.sorted();
    let mut out =
        String::from("id,region,replication_regions,replication_mode,replication_expires_at\n");
    for (id, record) in tenants {
        let view = TenantView::new(id, &record, topology);
        let (regions, mode, expires) = match &view.replication {
            Some(r) => (
                r.regions.join(";"),
                r.mode,
                r.expires_at.clone().unwrap_or_default(),
            ),
            None => (String::new(), "", String::new()),
        };
        out.push_str(&format!(
            "{},{},{regions},{mode},{expires}\n",
            view.id, view.region
        ));
    }
    out.into_bytes()
}

/// The admin API as a Pingora background service.
pub struct AdminServer {
    pub addr: SocketAddr,
    /// `[tls.admin]`: HTTPS, optionally with client certificates.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub admin: Arc<Admin>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AdminServer {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Some(listener) = crate::server::bind_when_free(self.addr, "admin", &mut shutdown).await
        else {
            return;
        };
        // During an upgrade the old process may still append until it lets go of the log.
        loop {
            match self.admin.audit.take_over() {
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!("another process still writes the audit log; waiting");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot take over the audit log; the admin API is not served");
                    return;
                }
            }
        }
        tracing::info!(addr = %self.addr, "admin API listening");
        let app = router(Arc::clone(&self.admin));
        crate::tls::serve(listener, self.tls.clone(), app, shutdown).await;
    }
}
