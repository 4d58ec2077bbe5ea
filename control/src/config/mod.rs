//! The configuration: its model ([`model`], what the TOML file says, with defaults), the one
//! validator every change goes through ([`validate`]), and what a reload may change without a
//! restart ([`reload`]). Errors name the file, the key and what is wrong.

pub mod bgp;
pub mod bond;
pub mod eal;
pub mod model;
pub mod reload;
pub mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vlan_kernel_tests;

pub use model::*;
pub use validate::{
    validate, CheckKind, CheckSpec, Invalid, ServiceKey, Valid, ValidRealServer, ValidService,
};

use std::path::{Path, PathBuf};

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or type error (toml's message names the key, line and column).
    #[error("{file}: {message}")]
    Parse {
        /// File.
        file: PathBuf,
        /// toml's message.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// File.
        file: PathBuf,
        /// Dotted key, e.g. `services[0].real_servers[1].port`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The configuration cannot be written as TOML (`vipctl save`).
    #[error("cannot write the configuration as TOML: {0}")]
    Write(#[source] toml::ser::Error),
}

impl ConfigError {
    /// A validator refusal about `file`.
    pub fn invalid(file: &Path, e: Invalid) -> Self {
        ConfigError::Invalid {
            file: file.to_owned(),
            key: e.key,
            message: e.message,
        }
    }
}

/// Largest configuration file vipd reads: a file this large is a mistake, not a config.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// toml's message with each line cut to a readable length: it quotes the offending line, which
/// in a hostile file is 100 KB of brackets.
fn short_lines(message: &str) -> String {
    message
        .lines()
        .map(|l| {
            if l.len() > 160 {
                validate::shown(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<(Config, Valid), ConfigError> {
        Config::load_read(path).map(|(c, v, _)| (c, v))
    }

    /// [`Config::load`], and the bytes it read: a digest of them is the digest of what was
    /// applied, even when the file changes (or is a pipe) between two reads.
    pub fn load_read(path: &Path) -> Result<(Config, Valid, Vec<u8>), ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            file: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_FILE_BYTES {
            return Err(ConfigError::Parse {
                file: path.to_owned(),
                message: format!("{size} bytes is larger than the {MAX_FILE_BYTES} vipd reads"),
            });
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_err)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let (config, valid) = Config::parse(text, path)?;
        Ok((config, valid, bytes))
    }

    /// Parse and validate TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<(Config, Valid), ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_owned(),
            message: short_lines(e.to_string().trim_end()),
        })?;
        let valid = validate(&config).map_err(|e| ConfigError::invalid(path, e))?;
        Ok((config, valid))
    }

    /// The configuration as TOML that [`Config::parse`] (and `vipd --check`) accepts.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(ConfigError::Write)
    }
}
