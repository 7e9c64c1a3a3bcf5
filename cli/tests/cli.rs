//! The `colony` binary driven as a user drives it, against a real coordinator process on a
//! real PostgreSQL with the extension (a database of its own per test, from testkit; the
//! cluster comes from PGHOST/PGPORT/PGUSER, as for the e2e tests).

mod cli {
    pub mod admin;
    pub mod processes;
    pub mod submit;
    pub mod support;
    pub mod worker;
}
