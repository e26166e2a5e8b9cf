//! `residency-router probe URL`: one plain-HTTP GET, success on a 2xx. The container image
//! has no shell or curl (distroless), so its `HEALTHCHECK` runs the router binary itself
//! against `/livez`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest response head read; the probe needs the status line only.
const MAX_HEAD: usize = 8192;

/// The status of `GET url`, or what went wrong.
pub fn get(url: &str, timeout: Duration) -> Result<u16, String> {
    let (authority, path) = split_url(url)?;
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    // Every address in turn (`localhost` may be ::1 first and the listener IPv4 only).
    let mut refused = Vec::new();
    let (mut stream, addr) = addrs
        .iter()
        .find_map(|addr| match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => Some((stream, addr)),
            Err(e) => {
                refused.push(format!("{addr}: {e}"));
                None
            }
        })
        .ok_or_else(|| format!("cannot connect to {authority} ({})", refused.join("; ")))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: residency-router-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("no answer from {addr}: {e}"))?;
        head.extend_from_slice(&buf[..n]);
        if let Some(status) = status_of(&head)? {
            return Ok(status);
        }
        if n == 0 || head.len() > MAX_HEAD {
            return Err(format!("{addr} sent no complete HTTP response head"));
        }
    }
}

/// `http://host:port/path` as (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("`{url}`: the probe speaks plain HTTP only; give an http:// URL (for a TLS admin listener, probe from outside with curl)")
    })?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port = authority.rsplit_once(':').map(|(_, port)| port);
    if port.is_none_or(|p| p.parse::<u16>().is_err()) {
        return Err(format!(
            "`{url}`: give the host and port, e.g. http://127.0.0.1:9901/livez"
        ));
    }
    Ok((authority, if path.is_empty() { "/" } else { path }))
}

/// The status code once the head has arrived whole; `None` while it is partial.
fn status_of(head: &[u8]) -> Result<Option<u16>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(response.code),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("not an HTTP response: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_plain_http_with_a_port() {
        assert_eq!(
            split_url("http://127.0.0.1:9901/livez"),
            Ok(("127.0.0.1:9901", "/livez"))
        );
        assert_eq!(split_url("http://[::1]:9901"), Ok(("[::1]:9901", "/")));
        assert!(split_url("https://127.0.0.1:9901/livez")
            .unwrap_err()
            .contains("plain HTTP"));
        assert!(split_url("http://localhost/livez")
            .unwrap_err()
            .contains("host and port"));
        assert!(split_url("127.0.0.1:9901").is_err());
    }

    #[test]
    fn the_status_is_read_once_the_head_is_whole() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(
            status_of(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"),
            Ok(Some(503))
        );
        assert!(status_of(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
