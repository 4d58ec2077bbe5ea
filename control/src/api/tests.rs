//! The API against hostile and careless clients, on real sockets where it matters: roles
//! (403), the content type of changes (415), the body's size and deadline, the bounded
//! command queue (503), the header and idle timeouts closing connections, the connection cap
//! evicting anonymous connections first, the local admin socket, TLS. No test asserts on a
//! duration: timeouts are short and the tests wait for their effect (with a generous bound
//! that only stops a broken build from hanging).

use super::admission::{Admission, ConnInfo, Via};
use super::{router, secrets, ApiServer, Tokens, COMMAND_QUEUE};
use crate::config::ApiConfig;
use crate::health::HealthHandle;
use crate::kernel::counters::KernelCounters;
use crate::view::{Command, Shared, View};
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use crossbeam::channel::Receiver;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use vipd_dataplane::backend_stats::BackendStats;
use vipd_dataplane::counters::WorkerCounters;

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";
/// Longest a test waits for an effect before it fails (not a timing assertion).
const BOUND: Duration = Duration::from_secs(10);

fn shared(tokens: Tokens, config: &ApiConfig) -> (Arc<Shared>, Receiver<Command>) {
    let (tx, rx) = crossbeam::channel::bounded(COMMAND_QUEUE);
    let s = Shared {
        workers: vec![Arc::new(WorkerCounters::default())],
        backends: vec![Arc::new(BackendStats::new(4))],
        kernel: Arc::new(KernelCounters {
            interfaces: Vec::new(),
        }),
        view: ArcSwap::from_pointee(View::default()),
        commands: tx,
        health: HealthHandle::detached(Arc::default()),
        tokens,
        admissions: super::Admissions::new(config),
        samplers: Vec::new(),
        tracers: Vec::new(),
        listing: tokio::sync::Mutex::new(()),
        scaleout: crate::scaleout::BoxHandle::with_status(Default::default()),
    };
    (Arc::new(s), rx)
}

fn tokens() -> Tokens {
    Tokens {
        admin: Some(ADMIN.into()),
        read: Some(READ.into()),
    }
}

/// Answer every command from the control loop's side: reloads and changes with generation 7.
fn control_loop(rx: Receiver<Command>) {
    std::thread::spawn(move || {
        while let Ok(c) = rx.recv() {
            match c {
                Command::Reload(r) | Command::Change(_, r) => {
                    let _ = r.send(Ok(7));
                }
                Command::Zero(_, r) => {
                    let _ = r.send(Ok(()));
                }
            }
        }
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Sent {
    status: StatusCode,
    body: serde_json::Value,
    close: bool,
}

fn send(app: &axum::Router, req: Request<Body>) -> Sent {
    rt().block_on(async {
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let close = r.headers().get("connection").is_some_and(|v| v == "close");
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Sent {
            status,
            body,
            close,
        }
    })
}

fn request(method: &str, path: &str, token: Option<&str>, json: bool, body: &str) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if json {
        b = b.header("content-type", "application/json");
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Every route that changes something (method, path).
const CHANGES: &[(&str, &str)] = &[
    ("POST", "/api/v1/services"),
    ("PATCH", "/api/v1/services/tcp/10.0.100.1/80"),
    ("DELETE", "/api/v1/services/tcp/10.0.100.1/80"),
    ("POST", "/api/v1/services/tcp/10.0.100.1/80/real_servers"),
    (
        "PATCH",
        "/api/v1/services/tcp/10.0.100.1/80/real_servers/10.0.0.1/80",
    ),
    (
        "DELETE",
        "/api/v1/services/tcp/10.0.100.1/80/real_servers/10.0.0.1/80",
    ),
    (
        "POST",
        "/api/v1/services/tcp/10.0.100.1/80/real_servers/10.0.0.1/80/drain",
    ),
    ("PUT", "/api/v1/timeouts"),
    ("PATCH", "/api/v1/timeouts"),
    ("POST", "/api/v1/zero"),
    ("POST", "/api/v1/reload"),
    ("POST", "/api/v1/health/release"),
    ("POST", "/api/v1/box/drain"),
    ("POST", "/api/v1/box/resume"),
];

#[test]
fn the_read_token_reads_and_every_change_needs_the_admin_token_and_json() {
    let (s, rx) = shared(tokens(), &ApiConfig::default());
    control_loop(rx);
    let app = router(s, BOUND);
    for path in [
        "/metrics",
        "/api/v1/status",
        "/api/v1/health",
        "/api/v1/services",
    ] {
        for t in [READ, ADMIN] {
            let r = send(&app, request("GET", path, Some(t), false, ""));
            assert_eq!(r.status, StatusCode::OK, "GET {path}");
        }
    }
    for (method, path) in CHANGES {
        let r = send(&app, request(method, path, Some(READ), true, "{}"));
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (StatusCode::FORBIDDEN, Some("authorization")),
            "{method} {path} with the read-only token"
        );
        for (json, body) in [(false, "{}"), (false, "")] {
            let r = send(&app, request(method, path, Some(ADMIN), json, body));
            assert_eq!(
                (r.status, r.body["error"]["field"].as_str()),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("content-type")),
                "{method} {path} without Content-Type: application/json"
            );
        }
        let form = request(method, path, Some(ADMIN), false, "a=1");
        let (mut parts, body) = form.into_parts();
        parts.headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let r = send(&app, Request::from_parts(parts, body));
        assert_eq!(
            r.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{method} {path}: a form"
        );
    }
    let r = send(
        &app,
        request("POST", "/api/v1/reload", Some(ADMIN), true, ""),
    );
    assert_eq!(
        (r.status, r.body["generation"].as_u64()),
        (StatusCode::OK, Some(7))
    );
    // Unknown paths and methods say so before any of this.
    let r = send(
        &app,
        request("DELETE", "/api/v1/status", Some(ADMIN), false, ""),
    );
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = send(
        &app,
        request("POST", "/api/v1/nothing", Some(ADMIN), false, ""),
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Without a token, or a wrong one: 401, and the connection is closed after it.
    for t in [None, Some("wrong-token-0123456789")] {
        let r = send(&app, request("GET", "/api/v1/status", t, false, ""));
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.close, "401 closes the connection");
    }
}

#[test]
fn the_local_socket_is_admin_without_a_token_and_no_token_means_admin_on_loopback() {
    let (s, rx) = shared(tokens(), &ApiConfig::default());
    control_loop(rx);
    let app = router(s, BOUND);
    let a = Admission::new(4);
    let mut req = request("POST", "/api/v1/reload", None, true, "");
    req.extensions_mut().insert(ConnInfo {
        via: Via::Unix,
        conn: a.admit(true).unwrap(),
    });
    assert_eq!(send(&app, req).status, StatusCode::OK);
    let mut req = request("POST", "/api/v1/reload", None, true, "");
    req.extensions_mut().insert(ConnInfo {
        via: Via::Tcp,
        conn: a.admit(false).unwrap(),
    });
    assert_eq!(send(&app, req).status, StatusCode::UNAUTHORIZED);
    let (s, rx) = shared(Tokens::default(), &ApiConfig::default());
    control_loop(rx);
    let app = router(s, BOUND);
    let r = send(&app, request("POST", "/api/v1/reload", None, true, ""));
    assert_eq!(
        r.status,
        StatusCode::OK,
        "no token configured: loopback is admin"
    );
}

#[test]
fn a_full_command_queue_is_503_at_once_and_a_big_body_413() {
    let (s, _rx) = shared(tokens(), &ApiConfig::default());
    let mut replies = Vec::new();
    for _ in 0..COMMAND_QUEUE {
        let (tx, rx) = tokio::sync::oneshot::channel();
        s.commands.try_send(Command::Reload(tx)).unwrap();
        replies.push(rx);
    }
    let app = router(Arc::clone(&s), BOUND);
    let r = send(
        &app,
        request("POST", "/api/v1/reload", Some(ADMIN), true, ""),
    );
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64 changes wait"),
        "{}",
        r.body
    );
    let big = "x".repeat(super::MAX_BODY_BYTES + 1);
    let r = send(
        &app,
        request("POST", "/api/v1/services", Some(ADMIN), true, &big),
    );
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("65536 bytes"));
}

/// A running server with `config` changed by `edit`, and its control loop.
fn server(edit: impl FnOnce(&mut ApiConfig)) -> (ApiServer, Arc<Shared>) {
    let mut config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ApiConfig::default()
    };
    edit(&mut config);
    let (s, rx) = shared(tokens(), &config);
    control_loop(rx);
    let tls = secrets(&ApiConfig {
        token_file: None,
        read_token_file: None,
        ..config.clone()
    })
    .unwrap()
    .tls;
    let api = ApiServer::start(&config, tls, Arc::clone(&s)).unwrap();
    (api, s)
}

/// Read until the peer closes; what it sent.
fn read_to_close(c: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the connection was not closed within {BOUND:?}: {e}"),
        }
    }
}

fn connect(api: &ApiServer) -> TcpStream {
    let c = TcpStream::connect(api.local_addr()).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    c
}

fn get(token: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").into_bytes()
}

/// Read one HTTP response (head and a Content-Length body) off a kept-alive connection.
fn response(c: &mut impl Read) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1, "closed inside a response head");
        got.push(b[0]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

#[test]
fn timeouts_close_a_silent_a_slow_and_an_idle_connection() {
    let (api, s) = server(|c| {
        c.header_timeout = 0.2;
        c.idle_timeout = 60.0;
    });
    // Silent: nothing sent.
    let mut silent = connect(&api);
    assert!(read_to_close(&mut silent).is_empty());
    // Slowloris: half a head, never finished.
    let mut slow = connect(&api);
    slow.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    read_to_close(&mut slow);
    // A body that never arrives: 408, the connection closed.
    let mut body = connect(&api);
    body.write_all(
        format!("POST /api/v1/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut body)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Kept alive after an answer: the header timer closes it too.
    let mut kept = connect(&api);
    kept.write_all(&get(READ, "/api/v1/status")).unwrap();
    assert!(response(&mut kept).starts_with("http/1.1 200"));
    read_to_close(&mut kept);
    let c = &s.admissions.tcp.counters;
    assert!(c.header_timeouts.load(Ordering::Relaxed) >= 3);
    drop(api);

    // The idle timeout: a kept-alive connection whose client went quiet (header timer long).
    let (api, s) = server(|c| {
        c.header_timeout = 60.0;
        c.idle_timeout = 0.2;
    });
    let mut quiet = connect(&api);
    quiet.write_all(&get(READ, "/metrics")).unwrap();
    assert!(response(&mut quiet).starts_with("http/1.1 200"));
    read_to_close(&mut quiet);
    assert_eq!(
        s.admissions
            .tcp
            .counters
            .idle_timeouts
            .load(Ordering::Relaxed),
        1
    );
}

#[test]
fn at_the_cap_anonymous_connections_make_room_token_holders_are_kept() {
    let (api, s) = server(|c| c.max_connections = 2);
    let mut anon1 = connect(&api);
    let _anon2 = connect(&api);
    let mut holder = connect(&api);
    // anon1, the oldest without a token, made room for the third.
    assert!(read_to_close(&mut anon1).is_empty());
    holder.write_all(&get(READ, "/api/v1/status")).unwrap();
    assert!(response(&mut holder).starts_with("http/1.1 200"));
    let mut holder2 = connect(&api);
    holder2.write_all(&get(ADMIN, "/api/v1/status")).unwrap();
    assert!(
        response(&mut holder2).starts_with("http/1.1 200"),
        "anon2 made room"
    );
    // Both held connections showed a token: a new one is refused, the holders keep working.
    let mut late = connect(&api);
    let refused = String::from_utf8_lossy(&read_to_close(&mut late)).into_owned();
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("api.max_connections"),
        "{refused}"
    );
    holder.write_all(&get(READ, "/metrics")).unwrap();
    let metrics = response(&mut holder);
    assert!(
        metrics.contains("vipd_api_connections_evicted_total{listener=\"tcp\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("vipd_api_connections_refused_total{listener=\"tcp\"} 1"));
    let c = &s.admissions.tcp.counters;
    assert_eq!(c.evicted.load(Ordering::Relaxed), 2);
}

#[test]
fn the_local_socket_is_0600_and_admin() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run").join("api.sock");
    // A stale socket from a vipd that died is replaced.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let (api, _) = server(|c| c.socket = Some(path.clone()));
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(b"POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let answer = response(&mut c);
    assert!(
        answer.starts_with("http/1.1 200") && answer.contains("\"generation\":7"),
        "{answer}"
    );
    // A second vipd on the same socket is refused; a file in the way too.
    let taken = ApiServer::start(
        &ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            socket: Some(path.clone()),
            ..ApiConfig::default()
        },
        None,
        shared(Tokens::default(), &ApiConfig::default()).0,
    );
    assert!(matches!(taken, Err(super::ServeError::SocketInUse { .. })));
    drop(api);
    assert!(!path.exists(), "the socket is removed when vipd stops");
    std::fs::write(&path, "not a socket").unwrap();
    let blocked = ApiServer::start(
        &ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            socket: Some(path.clone()),
            ..ApiConfig::default()
        },
        None,
        shared(Tokens::default(), &ApiConfig::default()).0,
    );
    assert!(matches!(blocked, Err(super::ServeError::NotASocket { .. })));
}

/// A CA and a server certificate for 127.0.0.1 made by openssl in `dir`: (ca, cert, key).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vipd test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "api.key",
        "-out",
        "api.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "api.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "api.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (dir.join("ca.pem"), dir.join("api.pem"), dir.join("api.key"))
}

#[test]
fn tls_serves_with_the_configured_certificate_and_refuses_an_exposed_key() {
    use std::os::unix::fs::PermissionsExt;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = secrets(&ApiConfig {
        tls_certificate: Some(cert.clone()),
        tls_key: Some(key.clone()),
        ..ApiConfig::default()
    });
    assert!(
        matches!(&exposed, Err(e) if e.to_string().contains("mode 0644")),
        "an exposed key is refused"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (api, _) = server(|c| {
        c.tls_certificate = Some(cert.clone());
        c.tls_key = Some(key.clone());
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, connect(&api));
    stream.write_all(&get(READ, "/api/v1/status")).unwrap();
    assert!(response(&mut stream).starts_with("http/1.1 200"));
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = connect(&api);
    plain.write_all(&get(READ, "/api/v1/status")).unwrap();
    let got = read_to_close(&mut plain);
    assert!(!got.starts_with(b"HTTP/1.1 200"));
}
