//! The HTTP client of vipd's API (ureq: blocking, small, no TLS compiled in since vipd serves
//! plain HTTP), and what can go wrong, said in one line: vipd is not running, it refused (the
//! API's `{"error": {"field", "message"}}`), or something else on the way.

use serde_json::Value;
use std::path::Path;
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
                Ok(())
            }
        }
    }
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
    /// A client of the API at `api` (`host:port`, or `http://host:port`).
    pub fn new(api: &str, token_file: Option<&Path>) -> Result<Client, Failure> {
        let base = match api.strip_prefix("http://") {
            Some(rest) => format!("http://{}", rest.trim_end_matches('/')),
            None if api.contains("://") => {
                return Err(Failure::Other(format!(
                    "--api {api}: vipd's API speaks plain http (host:port or http://host:port)"
                )))
            }
            None => format!("http://{api}"),
        };
        let token = token_file.map(read_token).transpose()?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // vipctl talks to one box's own API: a proxy from the environment must not
            // come between them.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(TIMEOUT))
            .build();
        Ok(Client {
            agent: config.into(),
            base,
            api: api.to_string(),
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
            "vipd is not running (nothing answers at {}; --api or $VIPCTL_API names another address)",
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
        let with_body = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| match body {
            Some(b) => r
                .content_type("application/json")
                .send(b.to_string().as_bytes()),
            None => r.send_empty(),
        };
        let r = match method {
            Method::Post => with_body(self.auth(self.agent.post(url))),
            Method::Patch => with_body(self.auth(self.agent.patch(url))),
            Method::Delete => self.auth(self.agent.delete(url)).call(),
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
