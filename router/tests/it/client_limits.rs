//! Client connection limits (issue 14 item 4) over real sockets: keep-alive idle timeout,
//! request-head timeout (slowloris), head size, requests per connection, the HTTP/2 idle
//! timeout and the connection cap, each with the router's JSON answer where one is due.

use std::time::{Duration, Instant};

use crate::common::{Cluster, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GET_ACME: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\r\n\r\n";

/// Reads one HTTP/1.1 response with a `content-length` body: (status, head, body).
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (status, head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the peer closes the connection; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

async fn connect(cluster: &Cluster) -> TcpStream {
    TcpStream::connect(cluster.router.addr()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_keepalive_connections_are_closed_after_the_timeout() {
    let cluster = Cluster::start_with(Options {
        // Long enough for all 1,000 to be answered before the first times out, on 2 busy cores.
        proxy: "client_keepalive_timeout_ms = 2500",
        metrics: true,
        ..Options::default()
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let addr = cluster.router.addr();
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(GET_ACME).await.unwrap();
            let (status, head, _) = read_response(&mut stream).await;
            assert_eq!(status, 200, "{head}");
            (stream, Instant::now())
        }));
    }
    let mut connections = Vec::new();
    for task in tasks {
        connections.push(task.await.unwrap());
    }
    assert_eq!(
        cluster.metric("residency_client_connections", &[]).await,
        1000.0
    );
    let mut closing = Vec::new();
    for (mut stream, answered) in connections {
        closing.push(tokio::spawn(async move {
            let closed = closed_within(&mut stream, Duration::from_secs(10)).await;
            closed.map(|_| answered.elapsed())
        }));
    }
    let mut idle_for = Vec::new();
    for task in closing {
        idle_for.push(task.await.unwrap().expect("closed within 10 s"));
    }
    let (shortest, longest) = (
        idle_for.iter().min().unwrap(),
        idle_for.iter().max().unwrap(),
    );
    // The router's clock starts when it has written the response, a little before the client
    // has read it: under load that can be a few hundred milliseconds.
    assert!(*shortest >= Duration::from_millis(1000), "{shortest:?}");
    assert!(*longest < Duration::from_secs(6), "{longest:?}");
    assert_eq!(
        cluster.metric("residency_client_connections", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn a_slowloris_head_is_cut_at_the_header_timeout_with_a_408() {
    let cluster = Cluster::start_with(Options {
        proxy: "client_header_timeout_ms = 1000",
        metrics: true,
        ..Options::default()
    })
    .await;
    let mut stream = connect(&cluster).await;
    let start = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // One header byte every 100 ms: each read is quick, the head never completes.
    let mut cut = None;
    for byte in head.iter() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut peek = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.peek(&mut peek)).await
        {
            if n > 0 {
                cut = Some(start.elapsed());
                break;
            }
        }
    }
    let cut = cut.expect("the router answered before the head was sent");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(4),
        "{cut:?}"
    );
    let (status, headers, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{headers}");
    assert!(headers.contains("connection: close"), "{headers}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "request_timeout");
    assert!(headers.contains(body["request_id"].as_str().unwrap()));
    assert!(closed_within(&mut stream, Duration::from_secs(3))
        .await
        .is_some());
    assert_eq!(
        cluster
            .metric(
                "residency_client_requests_refused_total",
                &[("reason", "header_timeout")]
            )
            .await,
        1.0
    );

    // A connection that never sends a byte is closed at the same timeout, without an answer.
    let mut silent = connect(&cluster).await;
    let closed = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection is closed");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
    assert_eq!(
        cluster.region_requests("us") + cluster.region_requests("eu"),
        0
    );
}

#[tokio::test]
async fn a_head_over_the_size_limit_gets_431_and_a_malformed_head_400_in_json() {
    let cluster = Cluster::start_with(Options {
        proxy: "client_max_head_bytes = 2048",
        ..Options::default()
    })
    .await;
    let mut large = connect(&cluster).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\r\nx-big: {}\r\n\r\n",
        "a".repeat(4096)
    );
    large.write_all(request.as_bytes()).await.unwrap();
    let (status, headers, body) = read_response(&mut large).await;
    assert_eq!(status, 431, "{headers}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "request_header_too_large");

    // Just under the limit is served.
    let mut fits = connect(&cluster).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nx-tenant-id: acme\r\nx-big: {}\r\n\r\n",
        "a".repeat(1800)
    );
    fits.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut fits).await.0, 200);

    // A head no HTTP/1 parser reads (a space before the colon) is answered by the router.
    let mut malformed = connect(&cluster).await;
    malformed
        .write_all(b"GET / HTTP/1.1\r\nHost : localhost\r\nx-tenant-id: acme\r\n\r\n")
        .await
        .unwrap();
    let (status, headers, body) = read_response(&mut malformed).await;
    assert_eq!(status, 400, "{headers}");
    assert!(headers.contains("x-request-id:"), "{headers}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "bad_request");
    assert_eq!(cluster.region_requests("us"), 1);
}

#[tokio::test]
async fn a_connection_carries_at_most_max_requests_per_connection() {
    let cluster = Cluster::start_with(Options {
        proxy: "max_requests_per_connection = 3",
        ..Options::default()
    })
    .await;
    let mut stream = connect(&cluster).await;
    for n in 1..=3 {
        stream.write_all(GET_ACME).await.unwrap();
        let (status, headers, _) = read_response(&mut stream).await;
        assert_eq!(status, 200, "{headers}");
        assert_eq!(
            headers.contains("connection: close"),
            n == 3,
            "{n}: {headers}"
        );
    }
    assert!(closed_within(&mut stream, Duration::from_secs(3))
        .await
        .is_some());
    assert_eq!(cluster.region_requests("us"), 3);
}

#[tokio::test]
async fn connections_past_the_cap_get_503_until_one_closes() {
    let cluster = Cluster::start_with(Options {
        proxy: "max_client_connections = 20\nclient_header_timeout_ms = 30000",
        metrics: true,
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&cluster).await;
        stream.write_all(GET_ACME).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        held.push(stream);
    }
    let mut refused = connect(&cluster).await;
    let (status, headers, body) = read_response(&mut refused).await;
    assert_eq!(status, 503, "{headers}");
    assert!(headers.contains("retry-after: 1"), "{headers}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "too_many_connections");
    assert_eq!(
        cluster
            .metric("residency_client_connections_refused_total", &[])
            .await,
        1.0
    );
    // The metrics listener is not a client connection, and is not capped by it.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = connect(&cluster).await;
        stream.write_all(GET_ACME).await.unwrap();
        let status = read_response(&mut stream).await.0;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "a slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_its_timeout() {
    let cluster = Cluster::start_with(Options {
        proxy: "client_h2_idle_timeout_ms = 1000",
        h2c: true,
        ..Options::default()
    })
    .await;
    let (mut sender, connection) = crate::common::h2c_connection(cluster.router.addr()).await;
    let request = http::Request::get("http://localhost/")
        .header("x-tenant-id", "acme")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    drop(response);
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the router closes an idle HTTP/2 connection")
        .unwrap()
        .ok();
    let closed = idle.elapsed();
    assert!(closed >= Duration::from_millis(500), "{closed:?}");
}
