//! Responses the router writes itself: always JSON, always with a stable error code.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use regions::BlockCode;
use serde::Serialize;

/// SPEC 4's block codes (a broken request included), plus codes for a failing allowed backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Block(BlockCode),
    /// 502: the backend answered with something that is not valid HTTP, or reset mid-response.
    UpstreamError,
    /// 504: the backend accepted the request but did not answer in time.
    UpstreamTimeout,
    /// 408: the request head did not arrive in full within `proxy.client_header_timeout_ms`.
    RequestTimeout,
    /// 431: the request head is larger than `proxy.client_max_head_bytes`.
    HeadTooLarge,
    /// 503: `proxy.max_client_connections` are open; the connection is refused.
    TooManyConnections,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Block(code) => code.as_str(),
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::HeadTooLarge => "request_header_too_large",
            ErrorCode::TooManyConnections => "too_many_connections",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Block(code) => code.http_status(),
            ErrorCode::UpstreamError => 502,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::HeadTooLarge => 431,
            ErrorCode::TooManyConnections => 503,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::Block(code) => code.message(),
            ErrorCode::UpstreamError => "the backend sent an invalid or incomplete response",
            ErrorCode::UpstreamTimeout => "the backend did not answer in time",
            ErrorCode::RequestTimeout => {
                "the request head did not arrive in time (proxy.client_header_timeout_ms)"
            }
            ErrorCode::HeadTooLarge => {
                "the request head is too large (proxy.client_max_head_bytes)"
            }
            ErrorCode::TooManyConnections => {
                "the router holds as many client connections as it may; retry shortly"
            }
        }
    }
}

/// The JSON body: `{"error", "message", "tenant", "home_region", "requested_region", "request_id"}`.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'static str,
    pub message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_region: Option<&'a str>,
    pub request_id: &'a str,
}

/// Whether the client connection stays open after an error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    KeepAlive,
    /// Pingora will close it: say so, or a client reusing it meets a reset.
    Close,
}

/// Writes a complete JSON error response. `retry_after` adds `Retry-After` (seconds).
pub async fn write_error(
    session: &mut Session,
    code: ErrorCode,
    body: &ErrorBody<'_>,
    retry_after: Option<u64>,
    connection: Connection,
) -> Result<()> {
    let json = serde_json::to_vec(body).expect("error bodies always serialize");
    let mut header = ResponseHeader::build(code.status(), Some(5))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", json.len().to_string())?;
    header.insert_header("x-request-id", body.request_id)?;
    if let Some(seconds) = retry_after {
        header.insert_header("retry-after", seconds.to_string())?;
    }
    if connection == Connection::Close {
        header.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(json)), true)
            .await?;
    }
    Ok(())
}
