//! The API's listeners and connections, on their own thread with a current-thread runtime:
//! `api.listen` (plain HTTP, or TLS with `api.tls_certificate`/`api.tls_key`) and the local
//! admin socket `api.socket` (Unix, 0600). Each connection is served by hyper's HTTP/1 server
//! with its header-read timer (`api.header_timeout`: from the connection's start or the
//! previous answer until a complete request head, so an idle kept-alive connection ends then
//! too), under [`super::activity`]'s idle timeout (`api.idle_timeout`) and within
//! [`super::admission`]'s cap. Nothing here waits on the control loop: changes reach it over a
//! bounded channel (crate::view), and a slow client only ever holds its own task.

use super::activity::{Activity, Watched};
use super::admission::{Admission, ConnHandle, ConnInfo, ListenerCounters, Via};
use crate::config::ApiConfig;
use crate::view::Shared;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::{rustls, TlsAcceptor};
use tower::ServiceExt;

/// Connections the local admin socket holds at most (all trusted: beyond, refused).
pub const UNIX_MAX_CONNECTIONS: usize = 64;
/// How long open connections get to finish when vipd stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long the accept loop waits after a failed accept(2) (EMFILE: no descriptor free).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The admissions of both listeners (in [`Shared`], for `/metrics`).
#[derive(Debug)]
pub struct Admissions {
    /// `api.listen`.
    pub tcp: Arc<Admission>,
    /// `api.socket`.
    pub unix: Arc<Admission>,
}

impl Admissions {
    /// The caps the configuration gives.
    pub fn new(config: &ApiConfig) -> Self {
        Admissions {
            tcp: Admission::new(config.max_connections as usize),
            unix: Admission::new(UNIX_MAX_CONNECTIONS),
        }
    }
}

/// Why the API did not start (vipd refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `api.listen` cannot be bound.
    #[error("api.listen {addr}: cannot listen: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The socket cannot be made.
    #[error("api.socket {path}: {what}: {source}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// Another process serves the socket.
    #[error("api.socket {path}: another process answers on it (a vipd already running?)")]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
    /// Something else is at the socket's path.
    #[error("api.socket {path}: exists and is not a socket: remove it or choose another path")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// No runtime or thread.
    #[error("api: cannot start: {0}")]
    Runtime(io::Error),
}

/// The timeouts of every connection.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// The running API server.
pub struct ApiServer {
    addr: std::net::SocketAddr,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: Option<PathBuf>,
}

/// Connections the kernel queues for `accept(2)` (std's 128 fills within a millisecond of a
/// connection flood, and then a legitimate client's SYN waits a second for its retransmission;
/// the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// `addr` bound and listening, non-blocking.
fn listen_tcp(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// `path` as a Unix socket only its owner may use: bound under a temporary name, made 0600,
/// then renamed into place, so it never exists at `path` with wider permissions. A stale
/// socket (nobody answers) is replaced; a live one or anything else is an error.
fn bind_socket(path: &Path) -> Result<std::os::unix::net::UnixListener, ServeError> {
    let err = |what, source| ServeError::Socket {
        path: path.to_owned(),
        what,
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::SocketInUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(|e| err("cannot remove the stale socket", e))?;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| err("cannot create its directory", e))?;
    let name = path
        .file_name()
        .map_or_else(|| "api.sock".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener =
        std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| err("cannot bind", e))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("cannot make it 0600", e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| err("cannot put it in place", e)));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| err("cannot make it non-blocking", e))?;
    Ok(listener)
}

impl ApiServer {
    /// Listen where `config` says (errors are returned: vipd refuses to start) and serve on a
    /// thread of its own. `tls`: the server configuration when certificates are configured.
    pub fn start(
        config: &ApiConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        shared: Arc<Shared>,
    ) -> Result<ApiServer, ServeError> {
        let addr = config.listen;
        let tcp = listen_tcp(addr).map_err(|source| ServeError::Listen { addr, source })?;
        let bound = tcp
            .local_addr()
            .map_err(|source| ServeError::Listen { addr, source })?;
        let unix = config.socket.as_deref().map(bind_socket).transpose()?;
        let timeouts = Timeouts {
            header: Duration::from_secs_f64(config.header_timeout),
            idle: Duration::from_secs_f64(config.idle_timeout),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = super::router(Arc::clone(&shared), timeouts.header);
        let thread = std::thread::Builder::new()
            .name("vipd-api".into())
            .spawn(move || {
                runtime.block_on(run(tcp, tls, unix, app, shared, timeouts, stop_rx));
            })
            .map_err(ServeError::Runtime)?;
        Ok(ApiServer {
            addr: bound,
            stop: Some(stop_tx),
            thread: Some(thread),
            socket: config.socket.clone(),
        })
    }
}

impl ApiServer {
    /// The address `api.listen` is bound to (its port when the configuration says 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn run(
    tcp: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    unix: Option<std::os::unix::net::UnixListener>,
    app: Router,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let tcp = match tokio::net::TcpListener::from_std(tcp) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("api: {e}");
            return;
        }
    };
    let tls = tls.map(TlsAcceptor::from);
    let tcp_task = tokio::spawn(accept_tcp(
        tcp,
        tls,
        app.clone(),
        Arc::clone(&shared.admissions.tcp),
        timeouts,
        stop.clone(),
    ));
    let unix_task = match unix.map(tokio::net::UnixListener::from_std).transpose() {
        Ok(Some(l)) => Some(tokio::spawn(accept_unix(
            l,
            app,
            Arc::clone(&shared.admissions.unix),
            timeouts,
            stop.clone(),
        ))),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("api.socket: {e}");
            None
        }
    };
    let _ = stop.wait_for(|&s| s).await;
    let _ = tcp_task.await;
    if let Some(t) = unix_task {
        let _ = t.await;
    }
    // Open connections were asked to finish their request; a stuck client must not hold
    // vipd's shutdown.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while shared.admissions.tcp.open() + shared.admissions.unix.open() > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The answer to a connection over the cap on plain HTTP (written if the socket takes it at
/// once; the connection is closed either way).
fn refused_answer() -> Vec<u8> {
    let body = "{\"error\": {\"field\": \"vipd\", \"message\": \"api.max_connections reached: every connection held has shown a token\"}}\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Log an accept failure once, when accepting starts failing; true from then on.
fn accept_failed(
    listener: &str,
    e: &io::Error,
    counters: &ListenerCounters,
    failing: bool,
) -> bool {
    ListenerCounters::bump(&counters.accept_errors);
    if !failing {
        tracing::warn!(
            "api: cannot accept connections on {listener}: {e} (no descriptor left? LimitNOFILE, api.max_connections); retrying"
        );
    }
    true
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    admission: Arc<Admission>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let name = listener
        .local_addr()
        .map_or_else(|_| "api.listen".into(), |a| a.to_string());
    let counters = Arc::clone(&admission.counters);
    let refused = refused_answer();
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|&s| s) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                if failing {
                    failing = false;
                    tracing::info!("api: accepting connections on {name} again");
                }
                s
            }
            Err(e) => {
                failing = accept_failed(&name, &e, &counters, failing);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(conn) = admission.admit(false) else {
            ListenerCounters::bump(&counters.refused);
            if tls.is_none() {
                let _ = stream.try_write(&refused);
            }
            continue;
        };
        ListenerCounters::bump(&counters.accepted);
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            via: Via::Tcp,
            conn,
        };
        let (app, tls, counters, stop) = (
            app.clone(),
            tls.clone(),
            Arc::clone(&counters),
            stop.clone(),
        );
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return serve(stream, info, app, timeouts, counters, stop).await;
            };
            let handshake = tokio::select! {
                r = tokio::time::timeout(timeouts.header, acceptor.accept(stream)) => r,
                () = info.conn.closed() => return,
            };
            match handshake {
                Ok(Ok(s)) => serve(s, info, app, timeouts, counters, stop).await,
                Ok(Err(e)) => tracing::debug!("api: TLS handshake failed: {e}"),
                Err(_) => ListenerCounters::bump(&counters.header_timeouts),
            }
        });
    }
}

/// The user ids the local socket serves: root and the user vipd runs as.
fn peer_allowed(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

async fn accept_unix(
    listener: tokio::net::UnixListener,
    app: Router,
    admission: Arc<Admission>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let counters = Arc::clone(&admission.counters);
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|&s| s) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                if failing {
                    failing = false;
                    tracing::info!("api: accepting connections on api.socket again");
                }
                s
            }
            Err(e) => {
                failing = accept_failed("api.socket", &e, &counters, failing);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(c) if peer_allowed(c.uid()) => {}
            other => {
                ListenerCounters::bump(&counters.peers_refused);
                tracing::warn!(
                    "api.socket: a connection refused: peer {:?} is neither root nor vipd's user",
                    other.map(|c| c.uid())
                );
                continue;
            }
        }
        let Some(conn) = admission.admit(true) else {
            ListenerCounters::bump(&counters.refused);
            continue;
        };
        ListenerCounters::bump(&counters.accepted);
        let info = ConnInfo {
            via: Via::Unix,
            conn,
        };
        tokio::spawn(serve(
            stream,
            info,
            app.clone(),
            timeouts,
            Arc::clone(&counters),
            stop.clone(),
        ));
    }
}

/// How often a connection's idle time is looked at.
fn idle_period(idle: Duration) -> Duration {
    (idle / 8).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// Serve one connection until it ends, times out, is evicted, or vipd stops.
async fn serve<IO>(
    io: IO,
    info: ConnInfo,
    app: Router,
    timeouts: Timeouts,
    counters: Arc<ListenerCounters>,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(io, Arc::clone(&activity)));
    let conn: ConnHandle = info.conn.clone();
    let act = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let busy = act.busy();
        let app = app.clone();
        async move {
            let answer = app.oneshot(req).await;
            drop(busy);
            answer
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut tick = tokio::time::interval(idle_period(timeouts.idle));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        ListenerCounters::bump(&counters.header_timeouts);
                    }
                }
                return;
            }
            () = conn.closed() => return,
            _ = stop.wait_for(|&s| s), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if activity.idle_for() >= timeouts.idle {
                    ListenerCounters::bump(&counters.idle_timeouts);
                    return;
                }
            }
        }
    }
}
