//! The HTTP admin API (SPEC.md): `GET /rep`, `POST /add`, `DELETE|POST /rm`,
//! plus `GET|PUT|POST /config` for the ring configuration. Every answer,
//! errors included, is SPEC.md's JSON envelope.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, header};
use http_body_util::BodyExt;
use ringlb_api::admin::{AdminError, AdminOp, parse_scale_request};
use ringlb_ring::{RingConfigPatch, RingError, parse_name};
use serde::{Deserialize, Serialize};

use crate::auth::AdminToken;
use crate::error::ManagerError;
use crate::manager::Manager;
use crate::state::RingState;

/// The largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
struct Api {
    manager: Arc<Manager>,
    token: AdminToken,
}

/// The admin API's routes over `manager`; mutating routes need `token`.
pub fn router(manager: Arc<Manager>, token: AdminToken) -> Router {
    Router::new()
        .route("/rep", get(rep).fallback(method_not_allowed))
        .route("/add", post(add).fallback(method_not_allowed))
        .route(
            "/rm",
            post(remove).delete(remove).fallback(method_not_allowed),
        )
        .route(
            "/config",
            get(get_config)
                .put(set_config)
                .post(set_config)
                .fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(Api { manager, token })
}

/// A JSON response with SPEC.md's content type.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, ringlb_api::APPLICATION_JSON)],
        body,
    )
        .into_response()
}

fn failure(status: StatusCode, what: &str) -> Response {
    json(status, ringlb_api::failure(what))
}

fn manager_failure(error: &ManagerError) -> Response {
    let status = if error.is_client_error() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    failure(status, &error.to_string())
}

fn replica_list(state: &RingState) -> Response {
    json(StatusCode::OK, ringlb_api::success(&state.replica_list()))
}

/// Most bytes of an oversized body read and dropped before the 413, so
/// that a client that sends its whole body first (no `Expect:
/// 100-continue`) reads the answer instead of a reset; past this, or past
/// [`DRAIN_LIMIT_TIME`], the connection closes with the rest unread.
pub const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;
/// How long reading an oversized body to drop it may take.
pub const DRAIN_LIMIT_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The body, at most [`MAX_BODY_BYTES`] of it; beyond, a 413 (with the rest
/// of the body drained, within [`DRAIN_LIMIT_BYTES`] and
/// [`DRAIN_LIMIT_TIME`]).
async fn read_body(mut body: Body) -> Result<Bytes, Response> {
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers
            };
            seen += data.len();
            if seen <= MAX_BODY_BYTES {
                kept.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT_BYTES {
                break;
            }
        }
        Ok::<_, axum::Error>(())
    };
    match tokio::time::timeout(DRAIN_LIMIT_TIME, read).await {
        Ok(Err(e)) => {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                &format!("Cannot read the request body: {e}"),
            ));
        }
        Ok(Ok(())) | Err(_) if seen > MAX_BODY_BYTES => {}
        Ok(Ok(())) => return Ok(kept.freeze()),
        Err(_) => {
            return Err(failure(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive in time",
            ));
        }
    }
    let mut response = failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Request body is larger than {MAX_BODY_BYTES} bytes"),
    );
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    Err(response)
}

/// The refusal of a mutating request without the admin token (401), or
/// with a body declared as something other than JSON (415).
fn refusal(api: &Api, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !api.token.permits(authorization) {
        let mut response = failure(StatusCode::UNAUTHORIZED, "Missing or invalid admin token");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Some(response);
    }
    let declared = headers.get(header::CONTENT_TYPE)?.to_str().unwrap_or("");
    (!is_json_like(declared)).then(|| {
        failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Type must be application/json, got '{declared}'"),
        )
    })
}

/// JSON, `+json` types, or the form type `curl -d` sends by default (the
/// body is read as JSON whatever it says).
fn is_json_like(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence.ends_with("+json")
        || essence == "application/x-www-form-urlencoded"
}

async fn rep(State(api): State<Api>) -> Response {
    replica_list(&api.manager.current())
}

async fn add(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    scale(api, AdminOp::Add, headers, body).await
}

async fn remove(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    scale(api, AdminOp::Remove, headers, body).await
}

async fn scale(api: Api, op: AdminOp, headers: HeaderMap, body: Body) -> Response {
    if let Some(refused) = refusal(&api, &headers) {
        return refused;
    }
    let manager = api.manager;
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let max_n = manager.settings().max_replicas as u64;
    let request = match parse_scale_request(op, &body, max_n) {
        Ok(request) => request,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let result = match op {
        AdminOp::Add => manager.add(request).await,
        AdminOp::Remove => manager.remove(request).await,
    };
    match result {
        Ok(state) => replica_list(&state),
        Err(e) => manager_failure(&e),
    }
}

/// The `message` of `/config` replies.
#[derive(Serialize)]
struct ConfigMessage<'a> {
    version: u64,
    config: &'a ringlb_ring::RingConfig,
}

fn config_reply(state: &RingState) -> Response {
    json(
        StatusCode::OK,
        ringlb_api::success(&ConfigMessage {
            version: state.version,
            config: &state.config,
        }),
    )
}

async fn get_config(State(api): State<Api>) -> Response {
    config_reply(&api.manager.current())
}

/// A partial ring configuration: fields left out keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPatch {
    slots: Option<u32>,
    vnodes: Option<u32>,
    request_hash: Option<String>,
    vnode_hash: Option<String>,
    probing: Option<String>,
    key_source: Option<String>,
    hash_balance_factor: Option<u32>,
    outlier_consecutive_failures: Option<u32>,
    outlier_base_ejection_ms: Option<u32>,
    outlier_max_ejection_percent: Option<u32>,
    slow_start_ms: Option<u32>,
}

impl TryFrom<&ConfigPatch> for RingConfigPatch {
    type Error = RingError;

    fn try_from(p: &ConfigPatch) -> Result<Self, RingError> {
        Ok(RingConfigPatch {
            slots: p.slots,
            vnodes: p.vnodes,
            request_hash: parse_name(p.request_hash.as_deref())?,
            vnode_hash: parse_name(p.vnode_hash.as_deref())?,
            probing: parse_name(p.probing.as_deref())?,
            key_source: parse_name(p.key_source.as_deref())?,
            hash_balance_factor: p.hash_balance_factor,
            outlier_consecutive_failures: p.outlier_consecutive_failures,
            outlier_base_ejection_ms: p.outlier_base_ejection_ms,
            outlier_max_ejection_percent: p.outlier_max_ejection_percent,
            slow_start_ms: p.slow_start_ms,
        })
    }
}

async fn set_config(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    if let Some(refused) = refusal(&api, &headers) {
        return refused;
    }
    let manager = api.manager;
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // The same refusals as /add and /rm for what is not a JSON object.
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        Ok(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                &AdminError::NotAnObject.to_string(),
            );
        }
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                &AdminError::MalformedJson(e.to_string()).to_string(),
            );
        }
    };
    let patch: ConfigPatch = match serde_json::from_value(value) {
        Ok(patch) => patch,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("Invalid ring configuration: {e}"),
            );
        }
    };
    let patch = match RingConfigPatch::try_from(&patch) {
        Ok(patch) => patch,
        Err(e) => return manager_failure(&ManagerError::from(e)),
    };
    match manager.set_config(|base| patch.apply_to(base)).await {
        Ok(state) => config_reply(&state),
        Err(e) => manager_failure(&e),
    }
}

async fn not_found(uri: Uri) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        &format!("'{}' endpoint does not exist", uri.path()),
    )
}

async fn method_not_allowed(method: http::Method, uri: Uri) -> Response {
    let allowed = match uri.path() {
        "/rep" => "GET, HEAD",
        "/add" => "POST",
        "/rm" => "DELETE, POST",
        _ => "GET, PUT, POST",
    };
    let mut response = failure(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method {method} is not allowed on '{}'", uri.path()),
    );
    if let Ok(value) = header::HeaderValue::from_str(allowed) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
