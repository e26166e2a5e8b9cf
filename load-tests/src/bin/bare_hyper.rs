//! `bare-hyper`: the smallest hyper 1.x forwarder, every request to one backend through
//! hyper-util's keep-alive client pool, served by hyper-util's HTTP/1.1 + h2c server. It is
//! what a lean Rust proxy does on this machine (Sentry's Synapse is built this way), next to
//! `bare-pingora` in the load harness. Like Synapse it drops hop-by-hop headers both ways.

use std::convert::Infallible;

use clap::Parser;
use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use load_tests::ForwarderArgs;

/// The router's allocator, as for `bare-pingora`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = BoxBody<Bytes, hyper::Error>;

/// Connection-scoped headers (RFC 9110 7.6.1) are not forwarded.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: http::uri::Authority,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let mut uri = Uri::builder().scheme("http").authority(authority);
    if let Some(path) = parts.uri.path_and_query() {
        uri = uri.path_and_query(path.clone());
    }
    parts.uri = uri
        .build()
        .expect("an http URI of a valid authority and path");
    parts.version = http::Version::HTTP_11;
    drop_hop_by_hop(&mut parts.headers);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(_) => {
            let mut response = Response::new(Empty::new().map_err(|e| match e {}).boxed());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(response)
        }
    }
}

async fn serve(args: ForwarderArgs) {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("bind the listen address");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let authority: http::uri::Authority = args.backend.to_string().parse().expect("authority");
    let server = Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, authority, server) = (client.clone(), authority.clone(), server.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), authority.clone(), request));
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn main() {
    let args = ForwarderArgs::parse();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("a tokio runtime");
    runtime.block_on(serve(args));
}
