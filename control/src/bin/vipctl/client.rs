//! The HTTP client of vipd's API (ureq: blocking, small; rustls for `https://`, the local
//! admin socket through [`crate::unix`]), and what can go wrong, said in one line: vipd is not
//! running, it refused (the API's `{"error": {"field", "message"}}`), or something else on
//! the way.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longer than the API's own wait for the control loop (30 s), so its answer arrives first.
const TIMEOUT: Duration = Duration::from_secs(35);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing answers at the API address.
    NotRunning(String),
    /// vipd answered with an error.
    Refused {
        /// HTTP status.
        status: u16,
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Anything else (a timeout, a broken answer, an unreadable token file).
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotRunning(m) | Failure::Other(m) => f.write_str(m),
            Failure::Refused {
                status,
                field,
                message,
            } => {
                write!(f, "{field}: {message}")?;
                if *status == 401 {
                    f.write_str(" (vipctl --token-file FILE, or $VIPCTL_TOKEN_FILE)")?;
                }
                if *status == 403 {
                    f.write_str(" (the admin token: --token-file, or the local socket: --socket)")?;
                }
                Ok(())
            }
        }
    }
}

/// Where vipd's API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`, `http://host:port` or `https://host:port`.
    Tcp(String),
    /// The local admin socket.
    Unix(PathBuf),
}

/// How to trust an `https://` API.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// A CA certificate (PEM) that signed vipd's certificate.
    pub ca: Option<PathBuf>,
    /// Accept any certificate (tests, first set-up): the connection is encrypted but vipd is
    /// not authenticated.
    pub insecure: bool,
}

/// A connection to one vipd.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    api: String,
    token: Option<String>,
}

/// The method of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// POST.
    Post,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

/// The TLS settings of `trust`: its CA, or no verification at all.
fn tls_config(trust: &Trust) -> Result<ureq::tls::TlsConfig, Failure> {
    let mut b = ureq::tls::TlsConfig::builder().disable_verification(trust.insecure);
    if let Some(ca) = &trust.ca {
        let pem = std::fs::read(ca)
            .map_err(|e| Failure::Other(format!("--cacert {}: cannot read: {e}", ca.display())))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::Other(format!("--cacert {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(Failure::Other(format!(
                "--cacert {}: no PEM certificate in it",
                ca.display()
            )));
        }
        b = b.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    Ok(b.build())
}

/// The token in `path`: its first line, trimmed (as vipd reads `api.token_file`).
fn read_token(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Other(format!("--token-file {}: cannot read: {e}", path.display()))
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(Failure::Other(format!(
            "--token-file {}: the first line is empty",
            path.display()
        )));
    }
    Ok(token)
}

impl Client {
    /// A client of the API at `endpoint`.
    pub fn new(
        endpoint: &Endpoint,
        token_file: Option<&Path>,
        trust: &Trust,
    ) -> Result<Client, Failure> {
        let token = token_file.map(read_token).transpose()?;
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // vipctl talks to one box's own API: a proxy from the environment must not
            // come between them.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(TIMEOUT));
        let (base, api, agent) = match endpoint {
            Endpoint::Unix(path) => {
                let agent = ureq::Agent::with_parts(
                    config.build(),
                    crate::unix::UnixConnector(path.clone()),
                    crate::unix::NoResolver,
                );
                ("http://vipd".to_string(), path.display().to_string(), agent)
            }
            Endpoint::Tcp(api) => {
                let base = if let Some(rest) = api.strip_prefix("http://") {
                    format!("http://{}", rest.trim_end_matches('/'))
                } else if let Some(rest) = api.strip_prefix("https://") {
                    config = config.tls_config(tls_config(trust)?);
                    format!("https://{}", rest.trim_end_matches('/'))
                } else if api.contains("://") {
                    return Err(Failure::Other(format!(
                        "--api {api}: vipd's API speaks http or https (host:port, http://host:port, https://host:port)"
                    )));
                } else {
                    format!("http://{api}")
                };
                (base, api.clone(), config.build().into())
            }
        };
        Ok(Client {
            agent,
            base,
            api,
            token,
        })
    }

    fn failure(&self, e: ureq::Error) -> Failure {
        match e {
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) =>
            {
                self.not_running()
            }
            ureq::Error::ConnectionFailed => self.not_running(),
            ureq::Error::Timeout(_) => Failure::Other(format!(
                "vipd at {} did not answer in time (is it stopped with SIGSTOP, or another program on that port?)",
                self.api
            )),
            other => Failure::Other(format!("talking to vipd at {}: {other}", self.api)),
        }
    }

    fn not_running(&self) -> Failure {
        Failure::NotRunning(format!(
            "vipd is not running (nothing answers at {}; --api or $VIPCTL_API names another address, --socket another socket)",
            self.api
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", format!("Bearer {t}")),
            None => r,
        }
    }

    /// The status and body of an answer; an error answer becomes [`Failure::Refused`].
    fn answer(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, Failure> {
        let mut resp = r.map_err(|e| self.failure(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.failure(e))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let err = serde_json::from_str::<Value>(&text).ok();
        let part = |k: &str| {
            err.as_ref()
                .and_then(|v| v["error"][k].as_str())
                .map(str::to_string)
        };
        Err(Failure::Refused {
            status,
            field: part("field").unwrap_or_else(|| format!("HTTP {status}")),
            message: part("message").unwrap_or_else(|| text.trim().to_string()),
        })
    }

    /// `GET path` as text.
    pub fn get_text(&self, path: &str) -> Result<String, Failure> {
        self.answer(self.auth(self.agent.get(self.url(path))).call())
    }

    /// `GET path?query` as JSON.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut r = self.auth(self.agent.get(self.url(path)));
        for (k, v) in query {
            r = r.query(*k, v);
        }
        let text = self.answer(r.call())?;
        self.json(&text)
    }

    /// A change: `method path` with `body` (JSON), answered with JSON.
    pub fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let url = self.url(path);
        // Every change carries the JSON type, with a body or without: vipd refuses others.
        let with_body = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            let r = r.content_type("application/json");
            match body {
                Some(b) => r.send(b.to_string().as_bytes()),
                None => r.send_empty(),
            }
        };
        let r = match method {
            Method::Post => with_body(self.auth(self.agent.post(url))),
            Method::Patch => with_body(self.auth(self.agent.patch(url))),
            Method::Delete => self
                .auth(self.agent.delete(url))
                .header("Content-Type", "application/json")
                .call(),
        };
        let text = self.answer(r)?;
        self.json(&text)
    }

    fn json(&self, text: &str) -> Result<Value, Failure> {
        serde_json::from_str(text).map_err(|e| {
            Failure::Other(format!(
                "vipd at {} answered something that is not JSON ({e})",
                self.api
            ))
        })
    }
}
