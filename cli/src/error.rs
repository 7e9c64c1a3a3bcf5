//! The CLI's one error type and the exit code of each kind, so scripts can tell "not there"
//! from "not allowed" from "try again later" without parsing messages (docs/cli.md).

use colony_client::Error as ClientError;

/// Exit codes; `colony --help` and docs/cli.md list them.
pub mod exit {
    pub const OK: u8 = 0;
    /// A usage error, bad input, or anything not listed below.
    pub const OTHER: u8 = 1;
    /// The colony, process, workflow or executor does not exist (or the token does not reach it).
    pub const NOT_FOUND: u8 = 2;
    /// The request conflicts with the current state (already exists, already finished) or was
    /// refused for now (too many long-polls).
    pub const CONFLICT: u8 = 3;
    /// The token is missing, unknown, revoked, or not allowed to do this.
    pub const AUTH: u8 = 4;
    /// No coordinator replica could serve the request, or its outcome is unknown.
    pub const UNAVAILABLE: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line, or the configuration it and the environment give, cannot work.
    #[error("{0}")]
    Usage(String),
    /// A spec or another input the user gave is not what it must be.
    #[error("{0}")]
    Input(String),
    /// A call to the coordinators failed; `context` says which call.
    #[error("{context}: {source}")]
    Client {
        context: String,
        #[source]
        source: ClientError,
    },
    /// A second signal stopped the worker before its commands finished.
    #[error("{0}")]
    Interrupted(String),
    /// Reading a file or stdin, or writing output, failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_)
            | CliError::Input(_)
            | CliError::Interrupted(_)
            | CliError::Io { .. } => exit::OTHER,
            CliError::Client { source, .. } => client_exit_code(source),
        }
    }
}

fn client_exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::Api { status, .. } => match status {
            404 => exit::NOT_FOUND,
            409 | 429 => exit::CONFLICT,
            401 | 403 => exit::AUTH,
            _ => exit::OTHER,
        },
        ClientError::Unavailable { .. } | ClientError::OutcomeUnknown(_) => exit::UNAVAILABLE,
        ClientError::InvalidResponse(_) | ClientError::Config(_) => exit::OTHER,
    }
}

/// Attaches what was being done to a client error: `cancel process 7: 404 not_found: ...`.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, CliError>;
}

impl<T> Context<T> for Result<T, ClientError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, CliError> {
        self.map_err(|source| CliError::Client {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, CliError> {
        self.map_err(|source| CliError::Io {
            context: what(),
            source,
        })
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> CliError {
        CliError::Client {
            context: "x".into(),
            source: ClientError::Api {
                status,
                code: "c".into(),
                message: "m".into(),
                sqlstate: None,
            },
        }
    }

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        assert_eq!(api(404).exit_code(), exit::NOT_FOUND);
        assert_eq!(api(409).exit_code(), exit::CONFLICT);
        assert_eq!(api(401).exit_code(), exit::AUTH);
        assert_eq!(api(403).exit_code(), exit::AUTH);
        assert_eq!(api(400).exit_code(), exit::OTHER);
        let unavailable = CliError::Client {
            context: "x".into(),
            source: ClientError::Unavailable {
                last: "refused".into(),
                maybe_applied: false,
            },
        };
        assert_eq!(unavailable.exit_code(), exit::UNAVAILABLE);
        assert_eq!(CliError::Usage("u".into()).exit_code(), exit::OTHER);
    }
}
