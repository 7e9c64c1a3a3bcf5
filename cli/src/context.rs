//! What every command needs from the global options: clients made with the right token, the
//! colony, and the output mode.

use crate::cli::Global;
use crate::error::{CliError, Result};
use colony_client::Client;

pub struct Context {
    global: Global,
}

impl Context {
    pub fn new(global: Global) -> Context {
        Context { global }
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    /// The `--colony` the command acts in.
    pub fn colony(&self) -> Result<&str> {
        self.global
            .colony
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| CliError::Usage("no colony: pass --colony or set COLONY_COLONY".into()))
    }

    /// A client with the admin token (required).
    pub fn admin(&self) -> Result<Client> {
        let token = self.global.admin_token.as_deref().ok_or_else(|| {
            CliError::Usage(
                "this command needs an admin token: pass --admin-token or set COLONY_ADMIN_TOKEN"
                    .into(),
            )
        })?;
        self.client(token)
    }

    /// A client with the executor token (required): what `worker` acts as.
    pub fn executor(&self) -> Result<Client> {
        let token = self.global.token.as_deref().ok_or_else(|| {
            CliError::Usage(
                "this command needs an executor token: pass --token or set COLONY_TOKEN".into(),
            )
        })?;
        self.client(token)
    }

    /// A client for submitting: the executor token when given (submitting as an executor is
    /// the common case), else the admin token.
    pub fn submitter(&self) -> Result<Client> {
        self.either(
            self.global.token.as_deref(),
            self.global.admin_token.as_deref(),
        )
    }

    /// A client for reads and cancels either token may make: the admin token when given (it
    /// may reach more colonies than one executor's), else the executor token.
    pub fn reader(&self) -> Result<Client> {
        self.either(
            self.global.admin_token.as_deref(),
            self.global.token.as_deref(),
        )
    }

    fn either(&self, first: Option<&str>, second: Option<&str>) -> Result<Client> {
        match first.or(second) {
            Some(token) => self.client(token),
            None => Err(CliError::Usage(
                "no token: pass --token (executor) or --admin-token, or set COLONY_TOKEN or COLONY_ADMIN_TOKEN"
                    .into(),
            )),
        }
    }

    /// Whether an executor token was given.
    pub fn has_token(&self) -> bool {
        self.global.token.is_some()
    }

    /// Whether an admin token was given (some commands show more with one).
    pub fn has_admin_token(&self) -> bool {
        self.global.admin_token.is_some()
    }

    /// A client of the replicas acting with `token`.
    pub fn client(&self, token: &str) -> Result<Client> {
        let mut builder =
            Client::builder(self.global.urls.clone(), token).retry_for(self.global.retry_for);
        if self.global.in_order {
            builder = builder.start_at(0);
        }
        builder.build().map_err(|e| CliError::Usage(e.to_string()))
    }
}
