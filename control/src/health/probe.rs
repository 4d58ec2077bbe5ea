//! One health check against one real server: a TCP connect, or an HTTP/1.0 GET whose status
//! must match. Runs in the box's kernel stack (through the exception path when the real
//! server's port has a kernel interface), bounded by the check's timeout.
//!
//! The socket is opened and connected in two steps (socket2, then tokio) so that an error the
//! kernel gives before any packet leaves the box (no descriptor, no route) is told apart from
//! what the network and the server answer later ([`super::local`]).

use super::local::{classify, LocalFault, Phase};
use super::machine::Outcome;
use crate::config::{CheckKind, CheckSpec};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::ErrorKind;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of an HTTP response head vipd reads at most.
const MAX_HEAD: usize = 8192;

/// Why a check failed: the real server's answer (or silence), or the box's own fault.
enum Failure {
    Server(String),
    Local(LocalFault),
}

/// Run `spec` once.
pub async fn probe(spec: &CheckSpec) -> Outcome {
    match tokio::time::timeout(spec.timeout, exchange(spec)).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(Failure::Server(why))) => Outcome::Failed(why),
        Ok(Err(Failure::Local(f))) => Outcome::Local(f),
        Err(_) => Outcome::Failed(format!("timeout after {:?}", spec.timeout)),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::HostUnreachable => "host unreachable".into(),
        ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// An error of `phase` as a [`Failure`].
fn failure(phase: Phase, e: &std::io::Error) -> Failure {
    match classify(phase, e) {
        Some(f) => Failure::Local(f),
        None => Failure::Server(io_reason(e)),
    }
}

/// A TCP connection to `target`.
async fn connect(target: SocketAddr) -> Result<TcpStream, Failure> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| failure(Phase::Socket, &e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| failure(Phase::Socket, &e))?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(failure(Phase::Connect, &e)),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))
        .map_err(|e| failure(Phase::Socket, &e))?;
    stream
        .writable()
        .await
        .map_err(|e| failure(Phase::Exchange, &e))?;
    if let Some(e) = stream
        .take_error()
        .map_err(|e| failure(Phase::Exchange, &e))?
    {
        return Err(failure(Phase::Exchange, &e));
    }
    Ok(stream)
}

async fn exchange(spec: &CheckSpec) -> Result<(), Failure> {
    let mut stream = connect(spec.target).await?;
    let CheckKind::Http { path, status, host } = &spec.kind else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| match spec.target.ip() {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    });
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vipd-health-check\r\nConnection: close\r\n\r\n"
    );
    let server = |m: &str| Failure::Server(m.to_string());
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| failure(Phase::Exchange, &e))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| failure(Phase::Exchange, &e))?;
        if n == 0 {
            return Err(server(if len == 0 {
                "connection closed without an answer"
            } else {
                "connection closed inside the HTTP response head"
            }));
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) | Ok(httparse::Status::Partial)
                if response.code.is_some() =>
            {
                let code = response.code.unwrap_or(0);
                return if code == *status {
                    Ok(())
                } else {
                    Err(Failure::Server(format!("HTTP {code}, expected {status}")))
                };
            }
            Ok(_) if len < buf.len() => continue,
            Ok(_) => return Err(server("HTTP response head larger than 8 KiB")),
            Err(e) => return Err(Failure::Server(format!("not an HTTP response ({e})"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn spec(target: SocketAddr, kind: CheckKind) -> CheckSpec {
        CheckSpec {
            kind,
            target,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            rise: 1,
            fall: 1,
        }
    }

    fn http(status: u16) -> CheckKind {
        CheckKind::Http {
            path: "/health".into(),
            status,
            host: Some("web.example".into()),
        }
    }

    /// A real listener on loopback answering `answer` to one request, returning the request.
    async fn server(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            s.write_all(answer).await.unwrap();
            req.truncate(n);
            req
        });
        (addr, h)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn tcp_connect_and_refused() {
        rt().block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            assert_eq!(probe(&spec(addr, CheckKind::Tcp)).await, Outcome::Ok);
            drop(l);
            assert_eq!(
                probe(&spec(addr, CheckKind::Tcp)).await,
                Outcome::Failed("connection refused".into())
            );
        });
    }

    #[test]
    fn http_status_host_and_path() {
        rt().block_on(async {
            let (addr, h) = server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
            assert_eq!(probe(&spec(addr, http(200))).await, Outcome::Ok);
            let req = String::from_utf8(h.await.unwrap()).unwrap();
            assert!(
                req.starts_with("GET /health HTTP/1.0\r\n")
                    && req.contains("\r\nHost: web.example\r\n"),
                "{req}"
            );
            let (addr, _) = server(b"HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
            assert_eq!(
                probe(&spec(addr, http(200))).await,
                Outcome::Failed("HTTP 503, expected 200".into())
            );
            let (addr, _) = server(b"SSH-2.0-OpenSSH\r\n").await;
            let Outcome::Failed(why) = probe(&spec(addr, http(200))).await else {
                panic!("garbage accepted");
            };
            assert!(why.starts_with("not an HTTP response"), "{why}");
        });
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        rt().block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // Accepted by the kernel's backlog, never answered.
            let outcome = probe(&spec(addr, http(200))).await;
            assert_eq!(outcome, Outcome::Failed("timeout after 300ms".into()));
            drop(l);
        });
    }
}
