//! A site backend that costs next to nothing, so the load generator's core is not what limits
//! a proxy: it answers every request head (GET, no body) with a canned 200, keep-alive, and
//! `/big` with 64 KiB. One task per connection; pipelined requests are answered in order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const BIG_PATH: &str = "/big";
const BIG_BYTES: usize = 64 * 1024;

struct Answers {
    small: Vec<u8>,
    big: Vec<u8>,
}

fn response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Starts a backend for `site` on a loopback port; it runs until the runtime stops.
pub async fn start(site: &str, region: &str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let answers = Arc::new(Answers {
        small: response(
            "application/json",
            format!("{{\"site\":\"{site}\",\"region\":\"{region}\"}}").as_bytes(),
        ),
        big: response("application/octet-stream", &vec![b'x'; BIG_BYTES]),
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&answers)));
        }
    });
    Ok(addr)
}

async fn serve(mut stream: TcpStream, answers: Arc<Answers>) {
    let _ = stream.set_nodelay(true);
    let mut pending = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(end) = find_head_end(&pending[start..]) {
            let head = &pending[start..start + end];
            let big = head.starts_with(format!("GET {BIG_PATH} ").as_bytes());
            out.extend_from_slice(if big { &answers.big } else { &answers.small });
            start += end + 4;
        }
        pending.drain(..start);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}
