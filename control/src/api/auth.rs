//! Who may do what. Two bearer tokens: the admin token (`api.token_file`) for everything, the
//! read-only token (`api.read_token_file`, for Prometheus and dashboards) for `GET` and `HEAD`
//! only; a change with it is refused with 403 (by [`super::change::Change`], which every
//! changing route takes). Without any token, on a loopback address, everyone on the box is
//! admin, as before. The local admin socket (`api.socket`) needs no token: its file mode (0600)
//! and the peer's user id are the authentication. Secret files (tokens, the TLS key) that
//! their group or others may read or write are refused, naming the file and its mode.

use super::admission::{ConnInfo, Via};
use super::error::ApiError;
use crate::view::Shared;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Smallest token vipd accepts: shorter ones are guessable.
const MIN_TOKEN_LEN: usize = 16;
/// Largest secret file vipd reads (a token, a private key).
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It cannot be read.
    #[error("{key} {file}: cannot read: {source}")]
    Read {
        /// The configuration key naming it.
        key: &'static str,
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its group or others may read or write it.
    #[error("{key} {file}: mode {mode:04o} lets its group or others read or write it: chmod 600 {file} (owned by the user vipd runs as)")]
    Exposed {
        /// The configuration key naming it.
        key: &'static str,
        /// The file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not a regular file, or too large.
    #[error("{key} {file}: not a regular file of at most {MAX_SECRET_BYTES} bytes")]
    NotAFile {
        /// The configuration key naming it.
        key: &'static str,
        /// The file.
        file: PathBuf,
    },
    /// The token in it is too short or has spaces.
    #[error("{key} {file}: the token must be at least {MIN_TOKEN_LEN} printable characters without spaces on the first line")]
    BadToken {
        /// The configuration key naming it.
        key: &'static str,
        /// The file.
        file: PathBuf,
    },
    /// The two tokens are the same.
    #[error("api.read_token_file {file}: holds the admin token of api.token_file: the read-only token must be another one")]
    SameTokens {
        /// The read-only token's file.
        file: PathBuf,
    },
}

/// The bytes of a secret file, refused when its group or others may read or write it (the
/// mode is taken from the open file, so it is the file that is read).
pub fn read_private(key: &'static str, path: &Path) -> Result<Vec<u8>, SecretError> {
    let read_err = |source| SecretError::Read {
        key,
        file: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let meta = f.metadata().map_err(read_err)?;
    if !meta.is_file() || meta.len() > MAX_SECRET_BYTES {
        return Err(SecretError::NotAFile {
            key,
            file: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o066 != 0 {
        return Err(SecretError::Exposed {
            key,
            file: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(read_err)?;
    Ok(bytes)
}

/// The token in `path` (its first line, trimmed).
pub fn read_token(key: &'static str, path: &Path) -> Result<String, SecretError> {
    let bytes = read_private(key, path)?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < MIN_TOKEN_LEN || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(SecretError::BadToken {
            key,
            file: path.to_owned(),
        });
    }
    Ok(token)
}

/// The API's tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// `api.token_file`: everything.
    pub admin: Option<String>,
    /// `api.read_token_file`: `GET` and `HEAD` only.
    pub read: Option<String>,
}

impl Tokens {
    /// Read the files the configuration names.
    pub fn load(admin: Option<&Path>, read: Option<&Path>) -> Result<Tokens, SecretError> {
        let tokens = Tokens {
            admin: admin.map(|p| read_token("api.token_file", p)).transpose()?,
            read: read
                .map(|p| read_token("api.read_token_file", p))
                .transpose()?,
        };
        if let (Some(a), Some(r), Some(file)) = (&tokens.admin, &tokens.read, read) {
            if same(a.as_bytes(), r.as_bytes()) {
                return Err(SecretError::SameTokens {
                    file: file.to_owned(),
                });
            }
        }
        Ok(tokens)
    }

    /// Whether any token is configured.
    pub fn any(&self) -> bool {
        self.admin.is_some() || self.read.is_some()
    }
}

/// What a request may do (a request extension, set by [`authenticate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `GET` and `HEAD`.
    Read,
    /// Everything.
    Admin,
}

/// Compare without an early exit, so the time taken says nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: the request's [`Role`], or 401 for a missing or wrong token. A connection
/// that showed a valid token is trusted (never evicted to make room, see
/// [`super::admission`]).
pub async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let info = req.extensions().get::<ConnInfo>().cloned();
    let role = if info.as_ref().is_some_and(|i| i.via == Via::Unix) || !shared.tokens.any() {
        Ok(Role::Admin)
    } else {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 11.1).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().as_bytes());
        let is = |t: &Option<String>, g: &[u8]| t.as_ref().is_some_and(|t| same(g, t.as_bytes()));
        match given {
            Some(g) if is(&shared.tokens.admin, g) => Ok(Role::Admin),
            Some(g) if is(&shared.tokens.read, g) => Ok(Role::Read),
            Some(_) => Err("the bearer token is wrong"),
            None => Err("this API needs `Authorization: Bearer <token>` (the token is in api.token_file, or api.read_token_file to read only)"),
        }
    };
    match role {
        Ok(role) => {
            if let Some(i) = &info {
                i.conn.trust();
            }
            req.extensions_mut().insert(role);
            next.run(req).await
        }
        Err(message) => unauthorized(message),
    }
}

/// 401, and the connection closed after it: a client without the token has nothing more to
/// say on it.
fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "authorization", message).into_response();
    let h = r.headers_mut();
    h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn secret_files_group_or_world_may_read_are_refused_naming_file_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let good = file(d.path(), "admin", "admin-token-0123456789\n", 0o600);
        let read = file(d.path(), "read", "read-token-0123456789\n", 0o400);
        let t = Tokens::load(Some(&good), Some(&read)).unwrap();
        assert_eq!(t.admin.as_deref(), Some("admin-token-0123456789"));
        assert_eq!(t.read.as_deref(), Some("read-token-0123456789"));
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            let p = file(d.path(), "open", "some-token-0123456789\n", mode);
            let e = read_token("api.token_file", &p).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "api.token_file {0}: mode {mode:04o} lets its group or others read or write it: chmod 600 {0} (owned by the user vipd runs as)",
                    p.display()
                )
            );
        }
        let short = file(d.path(), "short", "short\n", 0o600);
        assert!(read_token("api.token_file", &short)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        let twin = file(d.path(), "twin", "admin-token-0123456789\n", 0o600);
        assert!(matches!(
            Tokens::load(Some(&good), Some(&twin)),
            Err(SecretError::SameTokens { .. })
        ));
        let missing = d.path().join("missing");
        assert!(read_token("api.read_token_file", &missing)
            .unwrap_err()
            .to_string()
            .starts_with(&format!(
                "api.read_token_file {}: cannot read",
                missing.display()
            )));
        assert!(matches!(
            read_private("api.tls_key", d.path()),
            Err(SecretError::NotAFile { .. }) | Err(SecretError::Read { .. })
        ));
    }
}
