//! Adversarial input (issue 10, item 7): property tests over spec validation and every SQL
//! entry point.
//!
//! proptest draws the inputs: arbitrary JSON, nesting thousands of levels deep inside and
//! outside `args`/`kwargs`, huge arrays, `\u0000` escapes and lone surrogates, 1 MB names,
//! unicode, numbers at and past every limit, wrong types, malformed batches. Every property
//! checks the contract of docs/sql-api.md ("Errors"):
//!
//! - a call succeeds only when the documented rules say it may, and then with the right result
//!   (the stored row, the returned ids, the new state);
//! - otherwise it fails with a SQLSTATE of a documented class (22xxx, 54000, P0002, 42501,
//!   55000, 23505, 28000; and 54001, PostgreSQL's own stack limit, for JSON nested so deep that
//!   jsonb's parser refuses it before the extension runs) — never XX000;
//! - the connection survives (`SELECT 1` after every failed call);
//! - a failed call changes nothing ([`e2e::fingerprint`], plus logs, workflows and admins).
//!
//! What may succeed is worked out from the documented rules, not from the extension's code (a
//! model: [`spec_model`], [`Ctx::expect_finish`], ...). Where one input has several problems,
//! the SQLSTATE of any of them is accepted: which one is reported first is not part of the
//! contract.
//!
//! Runs are reproducible: every property uses the fixed seed [`SEED`] (`PROPTEST_RNG_SEED=n`
//! draws other inputs, `PROPTEST_CASES=n` changes the count). A failure prints the seed, the
//! command that replays it and the shrunk input (long strings shortened).
//!
//! The defects these properties found (and that were fixed) are pinned by regression tests at
//! the end, each with the input that showed it.

use e2e::TestDb;
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{
    Config, RngSeed, TestCaseError, TestCaseResult, TestError, TestRunner,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The seed of every property unless `PROPTEST_RNG_SEED` names another.
const SEED: u64 = 0x00c0_1041_a551_9e10;

/// Largest spec, output or error list (docs/sql-api.md: 256 KiB), and log message (16 KiB).
const MAX_DOCUMENT: i32 = 262_144;
const MAX_LOG: usize = 16_384;
const MAX_NAME: usize = 255;
/// Most closes in one close_many() call, and specs in one submit_many()/submit_workflow().
const MAX_CLOSES: usize = 1000;
const MAX_SPECS: usize = 100_000;

const TOP_KEYS: [&str; 10] = [
    "funcname",
    "args",
    "kwargs",
    "priority",
    "maxwaittime",
    "maxexectime",
    "maxretries",
    "label",
    "nodename",
    "conditions",
];
const CONDITION_KEYS: [&str; 7] = [
    "executortype",
    "executornames",
    "locationname",
    "dependencies",
    "preferredlocation",
    "localitywait",
    "colonyname",
];

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

fn seed() -> u64 {
    std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

/// One property's runner: fixed seed, no regression files (the seed replays a failure), and
/// shrinking bounded so that a failing run still ends in reasonable time.
fn runner(cases: u32) -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.rng_seed = RngSeed::Fixed(seed());
    config.failure_persistence = None;
    config.max_shrink_iters = 256;
    config.max_shrink_time = 30_000;
    TestRunner::new(config)
}

/// A test database with colony "c", a connection to it, and the runtime both live on.
struct Ctx {
    client: Client,
    db: TestDb,
    /// How the calls under test ended ("ok" or the SQLSTATE), printed after each property so
    /// that a run shows it explored both sides of the contract.
    outcomes: std::cell::RefCell<BTreeMap<String, u32>>,
    rt: tokio::runtime::Runtime,
}

impl Ctx {
    fn new(test: &str, setup: &str) -> Ctx {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (db, client) = rt.block_on(async {
            let (db, client) = super::setup(test).await;
            if !setup.is_empty() {
                client.batch_execute(setup).await.expect("test setup");
            }
            (db, client)
        });
        Ctx {
            client,
            db,
            outcomes: Default::default(),
            rt,
        }
    }

    /// Runs `test` on `cases` inputs drawn from `strategy`; panics with the seed, a replay
    /// command and the shrunk failing input.
    fn property<'a, S, Fut>(
        &'a self,
        name: &str,
        cases: u32,
        strategy: S,
        test: impl Fn(&'a Ctx, S::Value) -> Fut,
    ) where
        S: Strategy,
        Fut: Future<Output = TestCaseResult> + 'a,
    {
        let started = std::time::Instant::now();
        let result = runner(cases).run(&strategy, |value| self.rt.block_on(test(self, value)));
        match result {
            Ok(()) => eprintln!(
                "property {name}: passed in {:.1} s (seed {}); outcomes: {:?}",
                started.elapsed().as_secs_f64(),
                seed(),
                self.outcomes.take()
            ),
            Err(TestError::Fail(reason, input)) => panic!(
                "property {name} failed (seed {seed}; replay: PROPTEST_RNG_SEED={seed} cargo test -p e2e -- extension::adversarial::{name})\n\
                 {reason}\nminimal failing input: {input:#?}",
                seed = seed()
            ),
            Err(TestError::Abort(reason)) => panic!("property {name} aborted: {reason}"),
        }
    }

    /// A query the test itself needs; any error fails the case.
    async fn q(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, TestCaseError> {
        self.client
            .query(sql, params)
            .await
            .map_err(|e| TestCaseError::fail(format!("test query failed: {sql}: {e:?}")))
    }

    async fn q1(&self, sql: &str, params: Params<'_>) -> Result<Row, TestCaseError> {
        let mut rows = self.q(sql, params).await?;
        prop_assert_eq!(rows.len(), 1, "{} returned {} rows", sql, rows.len());
        Ok(rows.remove(0))
    }

    /// Everything a call could change: the harness's fingerprint, plus the tables it leaves
    /// out (logs, workflows, admins).
    async fn state(&self) -> Result<String, TestCaseError> {
        let rest: String = self
            .q1(
                "SELECT md5(coalesce((SELECT string_agg(l::text, '|' ORDER BY l.id) FROM colony_assign.logs l), '')
                         || coalesce((SELECT string_agg(w::text, '|' ORDER BY w.id) FROM colony_assign.workflows w), '')
                         || coalesce((SELECT string_agg(a::text, '|' ORDER BY a.name) FROM colony_assign.admins a), ''))",
                &[],
            )
            .await?
            .get(0);
        Ok(format!("{}/{rest}", e2e::fingerprint(&self.client).await))
    }

    /// The connection still works.
    async fn alive(&self, what: &str) -> TestCaseResult {
        match self.client.query_one("SELECT 1", &[]).await {
            Ok(row) if row.get::<_, i32>(0) == 1 => Ok(()),
            other => Err(TestCaseError::fail(format!(
                "{what}: the connection is unusable afterwards: {other:?}"
            ))),
        }
    }

    /// Calls `sql` and checks the contract: a refusal has a documented SQLSTATE that `expect`
    /// admits, leaves the connection usable and changes nothing; a success is one `expect`
    /// allows. Returns the rows of a success.
    async fn call(
        &self,
        what: &str,
        sql: &str,
        params: Params<'_>,
        expect: &Expect,
    ) -> Result<Option<Vec<Row>>, TestCaseError> {
        let before = self.state().await?;
        let result = self.client.query(sql, params).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().map_or("none".to_owned(), |c| c.code().to_owned()),
        };
        *self.outcomes.borrow_mut().entry(outcome).or_default() += 1;
        match result {
            Ok(rows) => {
                prop_assert!(
                    !expect.must_fail,
                    "{}: succeeded, but the contract refuses it with {}",
                    what,
                    expect
                );
                Ok(Some(rows))
            }
            Err(e) => {
                let Some(db) = e.as_db_error() else {
                    return Err(TestCaseError::fail(format!(
                        "{what}: failed without a SQLSTATE (did the backend crash?): {e:?}"
                    )));
                };
                let (code, message) = (db.code().code(), db.message());
                prop_assert_ne!(code, "XX000", "{}: internal error: {}", what, message);
                prop_assert!(
                    documented(code),
                    "{}: SQLSTATE {} ({}) is not of a documented class",
                    what,
                    code,
                    message
                );
                prop_assert!(
                    expect.admits(code),
                    "{}: refused with {} ({}), but the contract says {}",
                    what,
                    code,
                    message,
                    expect
                );
                prop_assert!(!message.is_empty(), "{}: {} without a message", what, code);
                self.alive(what).await?;
                prop_assert_eq!(
                    self.state().await?,
                    before,
                    "{}: refused with {} ({}) but changed the tables",
                    what,
                    code,
                    message
                );
                Ok(None)
            }
        }
    }

    /// What PostgreSQL's jsonb parser makes of `text`: its size as stored (what the 256 KiB
    /// limit measures), or the SQLSTATE it refuses it with.
    async fn jsonb_size(&self, text: &str) -> Result<Result<i32, String>, TestCaseError> {
        match self
            .client
            .query_one("SELECT pg_column_size($1::text::jsonb)", &[&text])
            .await
        {
            Ok(row) => Ok(Ok(row.get(0))),
            Err(e) => parser_refusal(&e).map(Err),
        }
    }

    /// The stored size of each element of the JSON array `text` (None when it is no array).
    async fn element_sizes(
        &self,
        text: &str,
    ) -> Result<Result<Option<Vec<i32>>, String>, TestCaseError> {
        match self
            .client
            .query_one(
                "SELECT CASE WHEN jsonb_typeof(d) = 'array' THEN
                            ARRAY(SELECT pg_column_size(e) FROM jsonb_array_elements(d) WITH ORDINALITY AS a(e, i) ORDER BY i)
                        END
                 FROM (SELECT $1::text::jsonb AS d) AS s",
                &[&text],
            )
            .await
        {
            Ok(row) => Ok(Ok(row.get(0))),
            Err(e) => parser_refusal(&e).map(Err),
        }
    }

    async fn colony_exists(&self, colony: &str) -> Result<bool, TestCaseError> {
        Ok(self
            .q1(
                "SELECT EXISTS (SELECT FROM colony_assign.colonies WHERE name = $1)",
                &[&colony],
            )
            .await?
            .get(0))
    }

    async fn executor_exists(&self, colony: &str, name: &str) -> Result<bool, TestCaseError> {
        Ok(self
            .q1(
                "SELECT EXISTS (SELECT FROM colony_assign.executors WHERE colony = $1 AND name = $2)",
                &[&colony, &name],
            )
            .await?
            .get(0))
    }

    /// A colony argument: its problems, or the name when it names an existing colony.
    async fn colony_arg<'n>(
        &self,
        expect: &mut Expect,
        colony: &'n Name,
    ) -> Result<Option<&'n str>, TestCaseError> {
        let Some(c) = name_rule(expect, colony) else {
            return Ok(None);
        };
        if self.colony_exists(c).await? {
            Ok(Some(c))
        } else {
            expect.problem("P0002");
            Ok(None)
        }
    }

    /// Deletes processes (and workflows) a property has checked, so that the tables, and with
    /// them the fingerprint taken around every call, stay small.
    async fn forget(&self, ids: &[i64], workflow: Option<i64>) -> TestCaseResult {
        self.q(
            "DELETE FROM colony_assign.processes WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
        self.q(
            "DELETE FROM colony_assign.workflows WHERE id = $1",
            &[&workflow],
        )
        .await?;
        Ok(())
    }

    /// id, colony, state and assigned executor of the processes among `ids` that exist.
    async fn processes(&self, ids: &[i64]) -> Result<HashMap<i64, Proc>, TestCaseError> {
        let rows = self
            .q(
                "SELECT id, colony, state, assigned_executor, p::text FROM colony_assign.processes p WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Proc {
                        colony: r.get(1),
                        state: r.get(2),
                        assigned: r.get(3),
                        row: r.get(4),
                    },
                )
            })
            .collect())
    }
}

/// The SQLSTATE PostgreSQL's own parser refused a test's pre-query with (the call under test
/// gets the same input, so it must be refused the same way).
fn parser_refusal(e: &tokio_postgres::Error) -> Result<String, TestCaseError> {
    match e.code().map(|c| c.code()) {
        Some(code @ ("22P02" | "22P05" | "54001" | "22021")) => Ok(code.to_owned()),
        _ => Err(TestCaseError::fail(format!(
            "PostgreSQL refused a test's own pre-query unexpectedly: {e:?}"
        ))),
    }
}

/// A class or code of docs/sql-api.md's error table (plus 54001, PostgreSQL's stack limit,
/// which its jsonb parser raises for very deep JSON before any of our code runs).
fn documented(code: &str) -> bool {
    code.starts_with("22")
        || [
            "54000", "54001", "P0002", "42501", "55000", "23505", "28000",
        ]
        .contains(&code)
}

/// What the contract allows a call to do.
#[derive(Clone, Debug, Default)]
struct Expect {
    /// Some problem makes the call fail.
    must_fail: bool,
    /// SQLSTATEs it may fail with (a two-character entry admits its whole class).
    codes: BTreeSet<&'static str>,
}

impl Expect {
    /// A problem the contract refuses with `code`.
    fn problem(&mut self, code: &'static str) {
        self.must_fail = true;
        self.codes.insert(code);
    }

    /// A refusal that is tolerated besides success (PostgreSQL's own limits, known defects).
    fn tolerate(&mut self, code: &'static str) {
        self.codes.insert(code);
    }

    fn admits(&self, code: &str) -> bool {
        self.codes
            .iter()
            .any(|c| *c == code || (c.len() == 2 && code.starts_with(c)))
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.must_fail, self.codes.is_empty()) {
            (false, true) => write!(f, "success"),
            (false, false) => write!(f, "success (or a refusal with one of {:?})", self.codes),
            (true, _) => write!(f, "a refusal with one of {:?}", self.codes),
        }
    }
}

/// The parser-level code PostgreSQL gives a text parameter or a JSON text; maps its refusals
/// into `expect` and says whether the rest can be modelled.
fn parsed<T>(expect: &mut Expect, outcome: Result<T, String>) -> Option<T> {
    match outcome {
        Ok(v) => Some(v),
        Err(code) => {
            expect.problem(match code.as_str() {
                "22P02" => "22P02",
                "22P05" => "22P05",
                "22021" => "22021",
                _ => "54001",
            });
            None
        }
    }
}

/// The documented rule for names (colonies, executors, types, locations): NULL is 22004,
/// empty or over 255 bytes 22023. A NUL byte cannot even be sent as text (PostgreSQL: 22021).
/// Returns the name when it is valid.
fn name_rule<'n>(expect: &mut Expect, name: &'n Name) -> Option<&'n str> {
    match name.0.as_deref() {
        None => {
            expect.problem("22004");
            None
        }
        Some(s) if s.contains('\0') => {
            expect.problem("22021");
            None
        }
        Some(s) if s.is_empty() || s.len() > MAX_NAME => {
            expect.problem("22023");
            None
        }
        Some(s) => Some(s),
    }
}

/// A text argument that is not name-checked: only a NUL byte is refused (by PostgreSQL).
fn text_rule(expect: &mut Expect, text: &Name) {
    if text.0.as_deref().is_some_and(|s| s.contains('\0')) {
        expect.problem("22021");
    }
}

/// A process as the tests see it before a call.
#[derive(Clone, Debug)]
struct Proc {
    colony: String,
    state: i32,
    assigned: Option<String>,
    /// The whole row as text, to show it did not change.
    row: String,
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// A string shortened for failure messages (1 MB names would drown them).
fn short(s: &str) -> String {
    let chars = s.chars().count();
    if chars <= 240 {
        return s.to_owned();
    }
    let head: String = s.chars().take(160).collect();
    let tail: String = s.chars().skip(chars - 40).collect();
    format!("{head}…<{} bytes in all>…{tail}", s.len())
}

/// A SQL text argument; None is NULL.
#[derive(Clone, PartialEq)]
struct Name(Option<String>);

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("NULL"),
            Some(s) => write!(f, "{:?}", short(s)),
        }
    }
}

fn named(s: &str) -> Name {
    Name(Some(s.to_owned()))
}

/// A JSON document, written as text by [`J::text`] (never through serde_json, so nesting,
/// numbers and escapes are exactly as drawn).
#[derive(Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    /// A number as written: any JSON number text.
    Num(String),
    Str(String),
    /// A string with every character written as a `\u` escape (surrogate pairs above U+FFFF).
    Esc(String),
    /// A string PostgreSQL must refuse: a lone surrogate escape.
    Bad(&'static str),
    Arr(Vec<J>),
    /// Keys are unique (jsonb keeps the last of duplicates; [`obj`] does the same).
    Obj(Vec<(String, J)>),
    /// `depth` (> 1) levels of `[`…`]` or `{"d":`…`}` around `1`, written without recursion.
    Deep {
        depth: usize,
        object: bool,
    },
    /// An array of `len` copies of `item`.
    Many {
        len: usize,
        item: Box<J>,
    },
}

fn obj(pairs: Vec<(String, J)>) -> J {
    let mut out: Vec<(String, J)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    }
    J::Obj(out)
}

fn s(text: &str) -> J {
    J::Str(text.to_owned())
}

impl J {
    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        use fmt::Write;
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string serializes")),
            J::Esc(s) => {
                out.push('"');
                for unit in s.encode_utf16() {
                    let _ = write!(out, "\\u{unit:04x}");
                }
                out.push('"');
            }
            J::Bad(raw) => out.push_str(raw),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("a key serializes"));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
            J::Deep { depth, object } => {
                let (open, close) = if *object {
                    ("{\"d\":", "}")
                } else {
                    ("[", "]")
                };
                out.reserve(depth * (open.len() + 1) + 1);
                for _ in 0..*depth {
                    out.push_str(open);
                }
                out.push('1');
                for _ in 0..*depth {
                    out.push_str(close);
                }
            }
            J::Many { len, item } => {
                let one = item.text();
                out.reserve(len * (one.len() + 1) + 2);
                out.push('[');
                for i in 0..*len {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&one);
                }
                out.push(']');
            }
        }
    }
}

impl fmt::Debug for J {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&short(&self.text()))
    }
}

/// The digits and decimal exponent of a JSON number: value = ±digits × 10^exponent, digits
/// without leading or trailing zeros ("" for zero).
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, t) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i64>().ok()?),
        None => (t, 0),
    };
    let (int_part, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int_part}{frac}");
    let digits = all.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    let exponent = exponent - frac.len() as i64 + (digits.len() - trimmed.len()) as i64;
    Some((negative, trimmed.to_owned(), exponent))
}

/// The exact integer a JSON number denotes, None when it is not an integer (or beyond i128,
/// far past every documented range). Decimal semantics, as PostgreSQL's numeric: 1.0 and 1e2
/// are integers, 1.5 and 1e-400 are not.
fn exact_int(text: &str) -> Option<i128> {
    let (negative, digits, exponent) = decimal(text)?;
    if digits.is_empty() {
        return Some(0);
    }
    if exponent < 0 || digits.len() as i64 + exponent > 36 {
        return None;
    }
    let v = digits.parse::<i128>().ok()? * 10i128.pow(exponent as u32);
    Some(if negative { -v } else { v })
}

/// A number that is not a bigint (not an integer, or out of range) whose nearest f64 is an
/// integer within the bigint range.
fn rounds_into_bigint(text: &str) -> bool {
    let exact = exact_int(text).and_then(|i| i64::try_from(i).ok());
    let rounded = text
        .parse::<f64>()
        .is_ok_and(|f| f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64);
    exact.is_none() && rounded
}

/// Numbers around every documented limit, past them, and of every JSON form, including
/// non-integers whose nearest f64 is an integer (1e-400, 50000.0000000000000001).
fn number() -> BoxedStrategy<String> {
    let edges = vec![
        "0",
        "-0",
        "-0.0",
        "1.0",
        "1e2",
        "1E+2",
        "5e4",
        "5.0e4",
        "50000",
        "50001",
        "-50000",
        "-50001",
        "50000.5",
        "-1",
        "-2",
        "315360000",
        "315360001",
        "86400",
        "86401",
        "1000000",
        "1000001",
        "2147483647",
        "2147483648",
        "-2147483649",
        "9223372036854775807",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "1e18",
        "-1e18",
        "999999999999999999",
        "1e300",
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "0.5",
        "1e-5",
        "-1e-7",
        "4.9e-324",
        "1.7976931348623157e308",
        "0.00000000000000000000000000001e29",
        "1e-400",
        "-1e-400",
        "50000.0000000000000001",
        "0.0000000000000000000000000000000000001",
    ];
    prop_oneof![
        4 => select(edges).prop_map(str::to_owned),
        2 => (-60_000i64..60_000).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (-1000i64..1000, 0u32..6).prop_map(|(n, e)| format!("{n}e{e}")),
        1 => (-1000i64..1000).prop_map(|n| format!("{n}.0")),
        1 => (-100_000i64..100_000, 1u32..999).prop_map(|(n, f)| format!("{n}.{f}1")),
    ]
    .boxed()
}

/// Strings for names and JSON strings: plain, unicode, hostile, at and past 255 bytes (also
/// where a multi-byte character straddles the limit), 1 MB, empty, with control characters
/// and NUL.
fn text() -> BoxedStrategy<String> {
    let hostile = vec![
        "'; DROP TABLE colony_assign.processes; --",
        "\"",
        "\\",
        "%s%n%x",
        "\u{202e}evil",
        "ca_b_00000000000000000000000000000000",
        "ü☃😀",
        " ",
        "a\u{0}b",
        "\u{0}",
        "\u{ffff}\u{fffe}",
        "\u{10ffff}",
        "e",
        "t",
        "c",
    ];
    let boundaries = vec![
        "n".repeat(MAX_NAME),
        "n".repeat(MAX_NAME + 1),
        format!("{}a", "é".repeat(127)),
        "é".repeat(128),
        format!("{}abc", "😀".repeat(63)),
        "😀".repeat(64),
    ];
    prop_oneof![
        6 => "[a-z]{1,8}",
        3 => "\\PC{1,16}",
        1 => vec(any::<char>(), 1..8).prop_map(|c| c.into_iter().collect::<String>()),
        1 => Just(String::new()),
        2 => select(hostile).prop_map(str::to_owned),
        2 => select(boundaries),
        1 => prop_oneof![Just("m".repeat(1 << 20)), Just("ü".repeat(1 << 19))],
    ]
    .boxed()
}

/// A SQL text argument: mostly names from `pool`, sometimes anything [`text`] draws, or NULL.
fn name_from(pool: &[&str]) -> BoxedStrategy<Name> {
    let pool: Vec<String> = pool.iter().map(|s| (*s).to_owned()).collect();
    prop_oneof![
        6 => select(pool).prop_map(|s| Name(Some(s))),
        3 => text().prop_map(|s| Name(Some(s))),
        1 => Just(Name(None)),
    ]
    .boxed()
}

/// Mostly `name`, else one of `others` or anything [`name_from`] draws.
fn mostly(name: &str, others: &[&str]) -> BoxedStrategy<Name> {
    prop_oneof![6 => Just(named(name)), 3 => name_from(others)].boxed()
}

fn key() -> BoxedStrategy<String> {
    let known: Vec<&str> = TOP_KEYS
        .iter()
        .chain(CONDITION_KEYS.iter())
        .copied()
        .collect();
    prop_oneof![
        2 => select(known).prop_map(str::to_owned),
        1 => text(),
        1 => Just("id".to_owned()),
        1 => Just("output".to_owned()),
    ]
    .boxed()
}

/// Nesting far past serde's 128 levels, past PostgreSQL's stack limit too (200,000).
fn deep() -> BoxedStrategy<J> {
    (select(vec![129usize, 1000, 5000, 200_000]), any::<bool>())
        .prop_map(|(depth, object)| J::Deep { depth, object })
        .boxed()
}

/// Arrays just past each documented count limit, and past the size limit.
fn many() -> BoxedStrategy<J> {
    let item = prop_oneof![
        Just(J::Num("1".into())),
        Just(s("e")),
        Just(J::Null),
        Just(J::Obj(vec![])),
    ];
    (
        select(vec![100usize, 101, 1000, 1001, 100_001, 300_000]),
        item,
    )
        .prop_map(|(len, item)| J::Many {
            len,
            item: Box::new(item),
        })
        .boxed()
}

fn leaf() -> BoxedStrategy<J> {
    prop_oneof![
        2 => Just(J::Null),
        2 => any::<bool>().prop_map(J::Bool),
        4 => number().prop_map(J::Num),
        4 => text().prop_map(J::Str),
        1 => "\\PC{0,8}".prop_map(J::Esc),
        1 => select(vec!["\"\\ud800\"", "\"x\\udc00\"", "\"\\ud83d\""]).prop_map(J::Bad),
        1 => deep(),
        1 => many(),
    ]
    .boxed()
}

/// Any JSON document.
fn any_json() -> BoxedStrategy<J> {
    leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(J::Arr),
                vec((key(), inner), 0..6).prop_map(obj),
            ]
        })
        .boxed()
}

/// A value for an optional spec field: present with probability `p`.
fn maybe(p: f64, value: BoxedStrategy<J>) -> BoxedStrategy<Option<J>> {
    weighted(p, value).boxed()
}

fn name_value() -> BoxedStrategy<J> {
    prop_oneof![6 => text().prop_map(J::Str), 1 => Just(J::Null), 1 => any_json()].boxed()
}

fn int_value() -> BoxedStrategy<J> {
    prop_oneof![6 => number().prop_map(J::Num), 1 => any_json()].boxed()
}

fn names_value(max: usize) -> BoxedStrategy<J> {
    prop_oneof![
        6 => vec(prop_oneof![6 => Just(s("e")), 1 => text().prop_map(J::Str), 1 => any_json()], 0..4)
            .prop_map(J::Arr),
        1 => Just(J::Many { len: max, item: Box::new(s("e")) }),
        1 => Just(J::Many { len: max + 1, item: Box::new(s("e")) }),
        1 => any_json(),
    ]
    .boxed()
}

fn conditions() -> BoxedStrategy<J> {
    let fields = (
        weighted(0.96, prop_oneof![12 => Just(s("t")), 2 => name_value()]),
        maybe(0.2, names_value(100)),
        maybe(
            0.2,
            prop_oneof![Just(s("")), Just(s("L")), name_value()].boxed(),
        ),
        maybe(0.1, names_value(1000)),
        maybe(0.1, name_value()),
        maybe(0.1, int_value()),
        maybe(
            0.15,
            prop_oneof![Just(s("")), Just(s("c")), Just(s("d")), name_value()].boxed(),
        ),
        weighted(0.03, (key(), any_json())),
    );
    prop_oneof![
        20 => fields.prop_map(|(t, names, loc, deps, preferred, wait, colony, extra)| {
            let mut pairs = Vec::new();
            for (k, v) in [
                ("executortype", t),
                ("executornames", names),
                ("locationname", loc),
                ("dependencies", deps),
                ("preferredlocation", preferred),
                ("localitywait", wait),
                ("colonyname", colony),
            ] {
                if let Some(v) = v {
                    pairs.push((k.to_owned(), v));
                }
            }
            pairs.extend(extra);
            obj(pairs)
        }),
        1 => any_json(),
    ]
    .boxed()
}

/// A spec near the boundary of validity: each field absent, valid, at or past a limit, of the
/// wrong type, or anything at all; args/kwargs deep, huge or of the wrong shape.
fn spec_doc() -> BoxedStrategy<J> {
    let args = prop_oneof![
        6 => vec(any_json(), 0..4).prop_map(J::Arr),
        2 => (select(vec![129usize, 1000, 5000, 200_000])).prop_map(|depth| J::Deep { depth, object: false }),
        1 => many(),
        1 => Just(J::Null),
        1 => any_json(),
    ];
    let kwargs = prop_oneof![
        6 => vec((text(), any_json()), 0..4).prop_map(obj),
        2 => deep().prop_map(|d| obj(vec![("k".into(), d)])),
        1 => Just(J::Null),
        1 => any_json(),
    ];
    let top = (
        weighted(0.96, prop_oneof![12 => Just(s("f")), 2 => name_value()]),
        maybe(0.4, args.boxed()),
        maybe(0.3, kwargs.boxed()),
        maybe(0.25, int_value()),
        maybe(0.1, int_value()),
        maybe(0.1, int_value()),
        maybe(0.1, int_value()),
        maybe(0.15, name_value()),
        maybe(0.1, name_value()),
        weighted(0.97, conditions()),
        weighted(0.03, (key(), any_json())),
    );
    let near_valid = top.prop_map(
        |(funcname, args, kwargs, priority, wait, exec, retries, label, nodename, cond, extra)| {
            let mut pairs = Vec::new();
            for (k, v) in [
                ("funcname", funcname),
                ("args", args),
                ("kwargs", kwargs),
                ("priority", priority),
                ("maxwaittime", wait),
                ("maxexectime", exec),
                ("maxretries", retries),
                ("label", label),
                ("nodename", nodename),
                ("conditions", cond),
            ] {
                if let Some(v) = v {
                    pairs.push((k.to_owned(), v));
                }
            }
            pairs.extend(extra);
            obj(pairs)
        },
    );
    prop_oneof![8 => near_valid, 1 => any_json()].boxed()
}

/// A valid spec for executor type "t" (priority drawn).
fn plain_spec(priority: i32) -> J {
    obj(vec![
        ("funcname".into(), s("f")),
        ("priority".into(), J::Num(priority.to_string())),
        (
            "conditions".into(),
            obj(vec![("executortype".into(), s("t"))]),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// The documented spec rules, as a model
// ---------------------------------------------------------------------------------------------

/// A JSON value as the model sees it; `Opaque` stands for the inside of a [`J::Deep`].
#[derive(Clone, Copy)]
enum V<'a> {
    J(&'a J),
    Opaque { object: bool },
}

impl<'a> V<'a> {
    fn str(self) -> Option<&'a str> {
        match self {
            V::J(J::Str(s) | J::Esc(s)) => Some(s),
            _ => None,
        }
    }

    fn num(self) -> Option<&'a str> {
        match self {
            V::J(J::Num(n)) => Some(n),
            _ => None,
        }
    }

    fn is_null(self) -> bool {
        matches!(self, V::J(J::Null))
    }

    fn is_array(self) -> bool {
        match self {
            V::J(J::Arr(_) | J::Many { .. }) => true,
            V::J(J::Deep { object, .. }) => !object,
            V::Opaque { object } => !object,
            _ => false,
        }
    }

    fn is_object(self) -> bool {
        match self {
            V::J(J::Obj(_)) => true,
            V::J(J::Deep { object, .. }) => *object,
            V::Opaque { object } => object,
            _ => false,
        }
    }

    fn fields(self) -> Option<Vec<(&'a str, V<'a>)>> {
        match self {
            V::J(J::Obj(pairs)) => Some(pairs.iter().map(|(k, v)| (k.as_str(), V::J(v))).collect()),
            _ if self.is_object() => Some(vec![("d", V::Opaque { object: true })]),
            _ => None,
        }
    }

    fn items(self) -> Option<Vec<V<'a>>> {
        match self {
            V::J(J::Arr(items)) => Some(items.iter().map(V::J).collect()),
            V::J(J::Many { len, item }) => Some(vec![V::J(item); *len]),
            _ if self.is_array() => Some(vec![V::Opaque { object: false }]),
            _ => None,
        }
    }
}

/// The row a valid spec becomes (the columns `process()` shows).
#[derive(Clone, Debug, PartialEq)]
struct SpecRow {
    funcname: String,
    priority: i32,
    label: Option<String>,
    nodename: Option<String>,
    executor_type: String,
    location: Option<String>,
    executor_names: Option<Vec<String>>,
    dependencies: Vec<String>,
}

/// docs/sql-api.md, Processes: the row `doc` becomes when submitted to `colony`, or None when
/// it must be refused (22023). Sizes are checked by the callers.
fn spec_model(doc: V<'_>, colony: &str, in_workflow: bool) -> Option<SpecRow> {
    fn int(v: Option<V<'_>>, lo: i128, hi: i128) -> Option<Option<i32>> {
        match v {
            None => Some(None),
            Some(v) => {
                let n = exact_int(v.num()?).filter(|n| (lo..=hi).contains(n))?;
                Some(Some(n as i32))
            }
        }
    }
    fn name(v: V<'_>) -> Option<String> {
        v.str()
            .filter(|s| !s.is_empty() && s.len() <= MAX_NAME)
            .map(str::to_owned)
    }
    /// An optional name: absent, null or "" are unset.
    fn opt_name(v: Option<V<'_>>) -> Option<Option<String>> {
        match v {
            None => Some(None),
            Some(v) => {
                let s = v.str().filter(|s| s.len() <= MAX_NAME)?;
                Some((!s.is_empty()).then(|| s.to_owned()))
            }
        }
    }
    fn names(v: Option<V<'_>>, max: usize) -> Option<Option<Vec<String>>> {
        match v {
            None => Some(None),
            Some(v) => {
                let items = v.items().filter(|i| i.len() <= max)?;
                items
                    .into_iter()
                    .map(name)
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
            }
        }
    }
    fn get<'a>(fields: &[(&str, V<'a>)], key: &str) -> Option<V<'a>> {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    let top = doc.fields()?;
    if top.iter().any(|(k, _)| !TOP_KEYS.contains(k)) {
        return None;
    }
    let funcname = name(get(&top, "funcname")?)?;
    if get(&top, "args").is_some_and(|a| !a.is_array())
        || get(&top, "kwargs").is_some_and(|k| !k.is_object())
    {
        return None;
    }
    let priority = int(get(&top, "priority"), -50_000, 50_000)?.unwrap_or(0);
    int(get(&top, "maxwaittime"), -1, 315_360_000)?;
    int(get(&top, "maxexectime"), -1, 315_360_000)?;
    int(get(&top, "maxretries"), -1, 1_000_000)?;
    let label = opt_name(get(&top, "label"))?;
    let nodename = opt_name(get(&top, "nodename"))?;
    let conditions = get(&top, "conditions")?.fields()?;
    if conditions.iter().any(|(k, _)| !CONDITION_KEYS.contains(k)) {
        return None;
    }
    let executor_type = name(get(&conditions, "executortype")?)?;
    let executor_names = names(get(&conditions, "executornames"), 100)?.filter(|n| !n.is_empty());
    let dependencies = names(get(&conditions, "dependencies"), 1000)?.unwrap_or_default();
    let location = opt_name(get(&conditions, "locationname"))?;
    opt_name(get(&conditions, "preferredlocation"))?;
    int(get(&conditions, "localitywait"), 0, 86_400)?;
    if !in_workflow && !dependencies.is_empty() {
        return None;
    }
    if let Some(c) = get(&conditions, "colonyname") {
        let c = c.str()?;
        if !c.is_empty() && c != colony {
            return None;
        }
    }
    Some(SpecRow {
        funcname,
        priority,
        label,
        nodename,
        executor_type,
        location,
        executor_names,
        dependencies,
    })
}

/// A cycle among the nodes (edges child -> parents), by Kahn's algorithm.
fn has_cycle(parents: &[Vec<usize>]) -> bool {
    let n = parents.len();
    let mut pending: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut children = vec![Vec::new(); n];
    for (child, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p].push(child);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut done = 0;
    while let Some(node) = ready.pop() {
        done += 1;
        for &c in &children[node] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
    }
    done < n
}

impl Ctx {
    /// The checks of a submitted spec's row: the model's columns, the spec stored verbatim.
    async fn check_row(
        &self,
        what: &str,
        id: i64,
        colony: &str,
        model: &SpecRow,
        spec_text: &str,
        workflow: Option<i64>,
    ) -> TestCaseResult {
        let row = self
            .q1(
                "SELECT state, colony, executor_type, location, executor_names, assigned_executor,
                        priority, funcname, label, nodename, output, retries, workflow_id,
                        md5(spec::text) = md5($2::text::jsonb::text)
                 FROM colony_assign.process($1)",
                &[&id, &spec_text],
            )
            .await?;
        let waiting: i32 = row.get(0);
        prop_assert_eq!(waiting, 0, "{}: process {} is not WAITING", what, id);
        prop_assert_eq!(row.get::<_, String>(1), colony, "{}: colony", what);
        prop_assert_eq!(
            row.get::<_, String>(2),
            model.executor_type.clone(),
            "{}: executor_type",
            what
        );
        prop_assert_eq!(
            row.get::<_, Option<String>>(3),
            model.location.clone(),
            "{}: location",
            what
        );
        prop_assert_eq!(
            row.get::<_, Option<Vec<String>>>(4),
            model.executor_names.clone(),
            "{}: executor_names",
            what
        );
        prop_assert_eq!(row.get::<_, Option<String>>(5), None, "{}: assigned", what);
        prop_assert_eq!(row.get::<_, i32>(6), model.priority, "{}: priority", what);
        prop_assert_eq!(
            row.get::<_, String>(7),
            model.funcname.clone(),
            "{}: funcname",
            what
        );
        prop_assert_eq!(
            row.get::<_, Option<String>>(8),
            model.label.clone(),
            "{}: label",
            what
        );
        prop_assert_eq!(
            row.get::<_, Option<String>>(9),
            model.nodename.clone(),
            "{}: nodename",
            what
        );
        prop_assert!(
            row.get::<_, Option<serde_json::Value>>(10).is_none(),
            "{}: output of a new process",
            what
        );
        prop_assert_eq!(row.get::<_, i32>(11), 0, "{}: retries", what);
        prop_assert_eq!(
            row.get::<_, Option<i64>>(12),
            workflow,
            "{}: workflow",
            what
        );
        prop_assert!(
            row.get::<_, bool>(13),
            "{}: the stored spec differs from the one submitted",
            what
        );
        Ok(())
    }

    /// One spec: its size and validity as refusals in `expect`, and its row when valid.
    fn spec_expect(
        expect: &mut Expect,
        doc: &J,
        size: i32,
        colony: Option<&str>,
        in_workflow: bool,
    ) -> Option<SpecRow> {
        if size > MAX_DOCUMENT {
            expect.problem("54000");
        }
        // The colonyname rule needs the colony; an invalid colony argument is refused anyway.
        let model = spec_model(V::J(doc), colony.unwrap_or("\u{0}"), in_workflow);
        if model.is_none() {
            expect.problem("22023");
        }
        model
    }

    /// A JSON array of specs: the refusals of the batch (and of each spec), and the rows.
    async fn batch_expect(
        &self,
        expect: &mut Expect,
        doc: &J,
        text: &str,
        colony: Option<&str>,
        in_workflow: bool,
    ) -> Result<Option<Vec<SpecRow>>, TestCaseError> {
        let Some(sizes) = parsed(expect, self.element_sizes(text).await?) else {
            return Ok(None);
        };
        let (Some(sizes), Some(items)) = (sizes, V::J(doc).items()) else {
            expect.problem("22023"); // not an array
            return Ok(None);
        };
        prop_assert_eq!(sizes.len(), items.len(), "element count of {:?}", doc);
        if items.len() > MAX_SPECS {
            expect.problem("54000");
        }
        let mut rows = Vec::with_capacity(items.len());
        let mut seen_shape: Vec<(*const J, i32)> = Vec::new();
        for (item, size) in items.iter().zip(sizes) {
            // A huge array repeats one item: model it once.
            if let V::J(j) = item {
                if seen_shape
                    .iter()
                    .any(|(p, s)| std::ptr::eq(*p, *j) && *s == size)
                {
                    rows.push(rows.last().cloned().flatten());
                    continue;
                }
                seen_shape.push((*j as *const J, size));
                rows.push(Self::spec_expect(expect, j, size, colony, in_workflow));
            } else {
                expect.problem("22023"); // an array inside the array (a deep one)
                rows.push(None);
            }
        }
        Ok(rows.into_iter().collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Properties: specs
// ---------------------------------------------------------------------------------------------

/// submit(colony, spec): any JSON, any colony argument.
#[test]
fn submit_any_spec() {
    let ctx = Ctx::new("adv_submit", "SELECT colony_assign.add_colony('d')");
    let colonies = mostly("c", &["d", "nope"]);
    ctx.property(
        "submit_any_spec",
        192,
        (colonies, spec_doc()),
        |ctx, (colony, doc)| async move {
            let text = doc.text();
            let what = format!("submit({colony:?}, {doc:?})");
            let mut expect = Expect::default();
            let c = ctx.colony_arg(&mut expect, &colony).await?;
            let valid_name = name_rule(&mut Expect::default(), &colony);
            let model = match parsed(&mut expect, ctx.jsonb_size(&text).await?) {
                Some(size) => Ctx::spec_expect(&mut expect, &doc, size, valid_name, false),
                None => None,
            };
            let sql = "SELECT colony_assign.submit($1, $2::text::jsonb)";
            let Some(rows) = ctx.call(&what, sql, &[&colony.0, &text], &expect).await? else {
                return Ok(());
            };
            let (Some(model), Some(c)) = (model, c) else {
                return Err(TestCaseError::fail(format!(
                    "{what}: succeeded outside the model"
                )));
            };
            let id: i64 = rows[0].get(0);
            ctx.check_row(&what, id, c, &model, &text, None).await?;
            ctx.forget(&[id], None).await
        },
    );
}

/// submit_many(colony, specs): arrays of near-valid specs, huge arrays, non-arrays.
#[test]
fn submit_many_any_batch() {
    let ctx = Ctx::new("adv_submit_many", "");
    let batch = prop_oneof![
        6 => vec(prop_oneof![4 => (-3i32..3).prop_map(plain_spec).boxed(), 1 => spec_doc()], 0..6)
            .prop_map(J::Arr),
        1 => (select(vec![0usize, 1, 1000, MAX_SPECS + 1]), prop_oneof![
                3 => (-3i32..3).prop_map(plain_spec).boxed(),
                1 => Just(J::Obj(vec![])).boxed(),
                1 => Just(J::Num("1".into())).boxed(),
            ])
            .prop_map(|(len, item)| J::Many { len, item: Box::new(item) }),
        1 => any_json(),
    ];
    ctx.property(
        "submit_many_any_batch",
        112,
        (mostly("c", &["nope"]), batch),
        |ctx, (colony, doc)| async move {
            let text = doc.text();
            let what = format!("submit_many({colony:?}, {doc:?})");
            let mut expect = Expect::default();
            let c = ctx.colony_arg(&mut expect, &colony).await?;
            let valid_name = name_rule(&mut Expect::default(), &colony);
            let rows = ctx
                .batch_expect(&mut expect, &doc, &text, valid_name, false)
                .await?;
            let sql = "SELECT * FROM colony_assign.submit_many($1, $2::text::jsonb)";
            let Some(ids) = ctx.call(&what, sql, &[&colony.0, &text], &expect).await? else {
                return Ok(());
            };
            let (Some(rows), Some(c)) = (rows, c) else {
                return Err(TestCaseError::fail(format!(
                    "{what}: succeeded outside the model"
                )));
            };
            let ids: Vec<i64> = ids.iter().map(|r| r.get(0)).collect();
            prop_assert_eq!(ids.len(), rows.len(), "{}: one id per spec", what);
            prop_assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "{}: ids not increasing in input order: {:?}",
                what,
                ids
            );
            let items = V::J(&doc).items().unwrap_or_default();
            // A huge batch of one repeated spec: check a few rows, not a thousand.
            for (i, (id, model)) in ids.iter().zip(&rows).enumerate().take(8) {
                let V::J(item) = items[i] else { continue };
                ctx.check_row(&what, *id, c, model, &item.text(), None)
                    .await?;
            }
            ctx.forget(&ids, None).await
        },
    );
}

/// A workflow: nodes named `n0`, `n1`, ... depending mostly on earlier nodes (a DAG), with
/// mutations — a missing, empty or duplicate nodename, forward, self and unknown dependencies
/// (cycles among them), repeated ones — and specs that are sometimes invalid.
fn workflow_doc() -> BoxedStrategy<J> {
    let spec = prop_oneof![10 => (-3i32..3).prop_map(plain_spec).boxed(), 1 => spec_doc()];
    let node = (
        spec,
        0u8..48,
        vec((proptest::bool::weighted(0.85), 0usize..8), 0..3),
        proptest::bool::weighted(0.9),
        weighted(0.05, names_value(1000)),
    );
    vec(node, 0..6)
        .prop_map(|nodes| {
            let items = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (spec, mutation, deps, dedupe, odd_deps))| {
                    let nodename = match mutation {
                        0 => J::Null,
                        1 => s(""),
                        2 => s("n0"),
                        3 => J::Num("1".into()),
                        _ => s(&format!("n{i}")),
                    };
                    let mut names: Vec<String> = deps
                        .into_iter()
                        .filter_map(|(back, d)| match (back, i) {
                            (true, 0) => None,
                            (true, i) => Some(format!("n{}", d % i)),
                            (false, _) => Some(format!("n{d}")),
                        })
                        .collect();
                    if dedupe {
                        let mut seen = Vec::new();
                        names.retain(|n| {
                            let new = !seen.contains(n);
                            seen.push(n.clone());
                            new
                        });
                    }
                    let deps =
                        odd_deps.unwrap_or_else(|| J::Arr(names.iter().map(|n| s(n)).collect()));
                    let J::Obj(mut pairs) = spec else { return spec };
                    pairs.retain(|(k, _)| k != "nodename");
                    pairs.push(("nodename".into(), nodename));
                    if let Some((_, J::Obj(c))) = pairs.iter_mut().find(|(k, _)| k == "conditions")
                    {
                        c.retain(|(k, _)| k != "dependencies");
                        c.push(("dependencies".into(), deps));
                    }
                    J::Obj(pairs)
                })
                .collect();
            J::Arr(items)
        })
        .boxed()
}

/// submit_workflow(colony, specs): random graphs of near-valid specs.
#[test]
fn submit_workflow_any_graph() {
    let ctx = Ctx::new("adv_workflow", "");
    let doc = prop_oneof![
        10 => workflow_doc(),
        1 => any_json(),
    ];
    ctx.property(
        "submit_workflow_any_graph",
        160,
        (mostly("c", &["nope"]), doc),
        |ctx, (colony, doc)| async move {
            let text = doc.text();
            let what = format!("submit_workflow({colony:?}, {doc:?})");
            let mut expect = Expect::default();
            let c = ctx.colony_arg(&mut expect, &colony).await?;
            let valid_name = name_rule(&mut Expect::default(), &colony);
            let rows = ctx
                .batch_expect(&mut expect, &doc, &text, valid_name, true)
                .await?;
            // The graph rules, once every spec is valid.
            let graph = rows.as_ref().map(|rows| {
                if rows.is_empty() {
                    expect.problem("22023");
                }
                let names: Vec<Option<&String>> =
                    rows.iter().map(|r| r.nodename.as_ref()).collect();
                let mut parents = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    if names[i].is_none() || names.iter().filter(|n| **n == names[i]).count() > 1 {
                        expect.problem("22023"); // missing or duplicate nodename
                    }
                    let mut ps: Vec<usize> = Vec::new();
                    for dep in &row.dependencies {
                        match names.iter().position(|n| *n == Some(dep)) {
                            Some(p) if !ps.contains(&p) => ps.push(p),
                            _ => expect.problem("22023"), // unknown or repeated
                        }
                    }
                    parents.push(ps);
                }
                if !expect.must_fail && has_cycle(&parents) {
                    expect.problem("22023");
                }
                parents
            });
            let sql = "SELECT colony_assign.submit_workflow($1, $2::text::jsonb)";
            let Some(result) = ctx.call(&what, sql, &[&colony.0, &text], &expect).await? else {
                return Ok(());
            };
            let (Some(rows), Some(parents), Some(c)) = (rows, graph, c) else {
                return Err(TestCaseError::fail(format!(
                    "{what}: succeeded outside the model"
                )));
            };
            let workflow: i64 = result[0].get(0);
            let graph: serde_json::Value = ctx
                .q1("SELECT colony_assign.workflow($1)", &[&workflow])
                .await?
                .get(0);
            prop_assert_eq!(&graph["id"], &serde_json::json!(workflow), "{}", what);
            prop_assert_eq!(&graph["colony"], &serde_json::json!(c), "{}", what);
            let nodes = graph["nodes"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(
                nodes.len(),
                rows.len(),
                "{}: one node per spec: {}",
                what,
                graph
            );
            let ids: Vec<i64> = nodes
                .iter()
                .map(|n| n["process_id"].as_i64().unwrap_or(0))
                .collect();
            for (i, node) in nodes.iter().enumerate() {
                let deps: Vec<&str> = rows[i].dependencies.iter().map(String::as_str).collect();
                let children: Vec<&str> = (0..rows.len())
                    .filter(|&c| parents[c].contains(&i))
                    .filter_map(|c| rows[c].nodename.as_deref())
                    .collect();
                prop_assert_eq!(
                    &node["nodename"],
                    &serde_json::json!(rows[i].nodename),
                    "{}",
                    what
                );
                prop_assert_eq!(
                    &node["parents"],
                    &serde_json::json!(deps),
                    "{}: parents of node {}",
                    what,
                    i
                );
                prop_assert_eq!(
                    &node["children"],
                    &serde_json::json!(children),
                    "{}: children of node {}",
                    what,
                    i
                );
                prop_assert_eq!(
                    &node["pending_parents"],
                    &serde_json::json!(deps.len()),
                    "{}",
                    what
                );
                let V::J(item) = V::J(&doc).items().unwrap_or_default()[i] else {
                    continue;
                };
                ctx.check_row(&what, ids[i], c, &rows[i], &item.text(), Some(workflow))
                    .await?;
            }
            ctx.forget(&ids, Some(workflow)).await
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Properties: the executor entry points
// ---------------------------------------------------------------------------------------------

/// assign(colony, executor, max_count): every max_count, any names, paused and strict colonies.
#[test]
fn assign_any_arguments() {
    let ctx = Ctx::new(
        "adv_assign",
        "SELECT colony_assign.add_executor('c', 'e', 't');
         SELECT colony_assign.add_executor('c', 'el', 't', 'L');
         SELECT colony_assign.add_executor('c', 'ex', 'x');",
    );
    let max_count = prop_oneof![
        6 => (1i32..5).prop_map(Some),
        2 => select(vec![i32::MIN, -1, 0, 1, 1000, 1001, i32::MAX]).prop_map(Some),
        1 => any::<i32>().prop_map(Some),
        1 => Just(None),
    ];
    // New work each case: priority, location (none / L / elsewhere), named or not.
    let work = vec(
        (
            -2i32..3,
            select(vec![None, Some("L"), Some("M")]),
            weighted(0.2, select(vec!["e", "el", "ghost"])),
        ),
        0..4,
    );
    let case = (
        mostly("c", &["nope"]),
        mostly("e", &["el", "ex", "ghost"]),
        max_count,
        work,
        any::<bool>(),
        weighted(0.15, any::<bool>()),
    );
    ctx.property(
        "assign_any_arguments",
        192,
        case,
        |ctx, (colony, executor, max_count, work, strict, pause)| async move {
            for (priority, location, named) in &work {
                let mut spec = serde_json::json!({"funcname": "f", "priority": priority,
                    "conditions": {"executortype": "t"}});
                if let Some(l) = location {
                    spec["conditions"]["locationname"] = serde_json::json!(l);
                }
                if let Some(n) = named {
                    spec["conditions"]["executornames"] = serde_json::json!([n]);
                }
                ctx.q("SELECT colony_assign.submit('c', $1)", &[&spec]).await?;
            }
            ctx.q("SELECT colony_assign.set_strict('c', $1)", &[&strict]).await?;
            let paused = pause.unwrap_or(false);
            let sql = if paused { "SELECT colony_assign.pause('c')" } else { "SELECT colony_assign.resume('c')" };
            ctx.q(sql, &[]).await?;

            let what = format!("assign({colony:?}, {executor:?}, {max_count:?}) strict={strict} paused={paused}");
            let mut expect = Expect::default();
            match max_count {
                None => {
                    expect.problem("22004");
                    expect.tolerate("22023");
                }
                Some(n) if !(1..=1000).contains(&n) => expect.problem("22023"),
                Some(_) => {}
            }
            let c = ctx.colony_arg(&mut expect, &colony).await?;
            let mut me = None;
            if let Some(e) = name_rule(&mut expect, &executor) {
                let found = ctx
                    .q("SELECT executor_type, location FROM colony_assign.executors WHERE colony = 'c' AND name = $1", &[&e])
                    .await?;
                match (c, found.first()) {
                    (Some(_), Some(row)) => me = Some((e, row.get::<_, String>(0), row.get::<_, Option<String>>(1))),
                    (Some(_), None) => expect.problem("P0002"),
                    _ => {}
                }
            }
            // What it may take, in queue order.
            let mut queue: Vec<i64> = Vec::new();
            if let Some((e, t, l)) = &me {
                queue = ctx
                    .q("SELECT id FROM colony_assign.processes p
                        WHERE p.colony = 'c' AND p.state = 0 AND p.pending_parents = 0 AND p.executor_type = $1
                          AND (p.location IS NULL OR p.location = $2)
                          AND (p.executor_names IS NULL OR $3 = ANY (p.executor_names))
                        ORDER BY p.priority DESC, p.id", &[t, l, e])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            }
            let sql = "SELECT id, state, assigned_executor FROM colony_assign.assign($1, $2, $3)";
            let Some(rows) = ctx.call(&what, sql, &[&colony.0, &executor.0, &max_count], &expect).await? else {
                return Ok(());
            };
            let (Some((e, _, _)), Some(n)) = (me, max_count) else {
                return Err(TestCaseError::fail(format!("{what}: succeeded outside the model")));
            };
            let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            let wanted: Vec<i64> = if paused { Vec::new() } else { queue.into_iter().take(n as usize).collect() };
            prop_assert_eq!(&got, &wanted, "{}: claimed other processes than the queue's head", what);
            for r in &rows {
                prop_assert_eq!(r.get::<_, i32>(1), 1, "{}: returned a process that is not RUNNING", what);
                prop_assert_eq!(r.get::<_, Option<String>>(2), Some(e.to_owned()), "{}: assigned to", what);
            }
            let stored: i64 = ctx
                .q1("SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND state = 1 AND assigned_executor = $2", &[&got, &e])
                .await?
                .get(0);
            prop_assert_eq!(stored as usize, got.len(), "{}: claims not stored", what);
            Ok(())
        },
    );
}

/// Which process an id argument names.
#[derive(Clone, Debug)]
enum Pick {
    /// One of the two processes this case's executor "e" is running.
    Running(usize),
    /// A process that has ended (SUCCESS).
    Finished,
    /// A process that waits (no executor of its type).
    Waiting,
    Id(i64),
    Null,
}

fn pick() -> BoxedStrategy<Pick> {
    prop_oneof![
        6 => (0usize..2).prop_map(Pick::Running),
        1 => Just(Pick::Finished),
        1 => Just(Pick::Waiting),
        1 => select(vec![i64::MIN, -1, 0, 1, i64::MAX]).prop_map(Pick::Id),
        1 => any::<i64>().prop_map(Pick::Id),
        1 => Just(Pick::Null),
    ]
    .boxed()
}

/// A close_many() batch: well-formed items (with picked or odd ids), or anything.
#[derive(Clone, Debug)]
enum Batch {
    Null,
    Items(Vec<Item>),
    Json(J),
}

#[derive(Clone, Debug)]
struct Item {
    id: ItemId,
    output: Option<J>,
    extra: Option<(String, J)>,
}

#[derive(Clone, Debug)]
enum ItemId {
    Absent,
    Pick(Pick),
    Json(J),
}

/// Outputs: any JSON (deep, huge, `\u0000`, numbers past f64, ...), and two just past 256 KiB.
fn output() -> BoxedStrategy<J> {
    prop_oneof![
        6 => any_json(),
        1 => Just(J::Many { len: 120_000, item: Box::new(J::Num("12345".into())) }),
        1 => Just(s(&"o".repeat(300_000))),
    ]
    .boxed()
}

fn batch() -> BoxedStrategy<Batch> {
    let id = prop_oneof![
        8 => pick().prop_map(ItemId::Pick),
        1 => Just(ItemId::Absent),
        1 => prop_oneof![
            select(vec![
                "1.0",
                "-0",
                "1e2",
                "1.5",
                "1e400",
                "1e-400",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "-9223372036854775809",
            ])
            .prop_map(|n| J::Num(n.to_owned())),
            any_json(),
        ]
        .prop_map(ItemId::Json),
    ];
    let item = (
        id,
        weighted(0.7, output()),
        weighted(0.05, (key(), any_json())),
    )
        .prop_map(|(id, output, extra)| Item { id, output, extra });
    prop_oneof![
        10 => vec(item, 0..5).prop_map(Batch::Items),
        1 => Just(Batch::Null),
        1 => any_json().prop_map(Batch::Json),
        1 => Just(Batch::Json(J::Many {
            len: MAX_CLOSES + 1,
            item: Box::new(obj(vec![("id".into(), J::Num("1".into()))])),
        })),
    ]
    .boxed()
}

#[derive(Clone, Debug)]
enum Finish {
    Close {
        id: Pick,
        executor: Name,
        output: Option<J>,
        colony: Name,
    },
    Fail {
        id: Pick,
        executor: Name,
        /// NULL elements are `Name(None)`.
        errors: Option<Vec<Name>>,
        colony: Name,
    },
    CloseMany {
        executor: Name,
        batch: Batch,
        colony: Name,
    },
}

fn finish() -> BoxedStrategy<Finish> {
    let executor = || mostly("e", &["other", "ghost"]);
    let colony = || {
        prop_oneof![
            4 => Just(Name(None)),
            2 => Just(named("c")),
            1 => Just(named("d")),
            1 => name_from(&["nope"]),
        ]
        .boxed()
    };
    let errors = prop_oneof![
        6 => vec(weighted(0.9, text().prop_map(|t| Name(Some(t)))), 0..4).prop_map(|v| {
            Some(v.into_iter().map(|e| e.unwrap_or(Name(None))).collect())
        }),
        1 => Just(None),
        1 => Just(Some(vec![named(&"x".repeat(1000)); 300])),
    ];
    prop_oneof![
        2 => (pick(), executor(), weighted(0.8, output()), colony())
            .prop_map(|(id, executor, output, colony)| Finish::Close { id, executor, output, colony }),
        1 => (pick(), executor(), errors, colony())
            .prop_map(|(id, executor, errors, colony)| Finish::Fail {
                id,
                executor,
                errors,
                colony,
            }),
        2 => (executor(), batch(), colony())
            .prop_map(|(executor, batch, colony)| Finish::CloseMany { executor, batch, colony }),
    ]
    .boxed()
}

/// The processes a finishing case works on.
struct Fixture {
    running: [i64; 2],
    finished: i64,
    waiting: i64,
}

impl Fixture {
    fn id(&self, pick: &Pick) -> Option<i64> {
        match pick {
            Pick::Running(i) => Some(self.running[*i]),
            Pick::Finished => Some(self.finished),
            Pick::Waiting => Some(self.waiting),
            Pick::Id(id) => Some(*id),
            Pick::Null => None,
        }
    }
}

impl Ctx {
    /// A new process of type "t" in colony "c", claimed by "e".
    async fn start_one(&self) -> Result<i64, TestCaseError> {
        let id: i64 = self
            .q1(
                "SELECT colony_assign.submit('c', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"t\"}}')",
                &[],
            )
            .await?
            .get(0);
        let claimed: i64 = self
            .q1("SELECT id FROM colony_assign.assign('c', 'e')", &[])
            .await?
            .get(0);
        prop_assert_eq!(claimed, id, "the fixture's assign claimed another process");
        Ok(id)
    }

    async fn fixture(&self) -> Result<Fixture, TestCaseError> {
        // Earlier cases' processes are no longer needed (but for one that ended, and
        // workflows): keep the tables small.
        self.q(
            "DELETE FROM colony_assign.processes WHERE workflow_id IS NULL AND id <> coalesce(
                 (SELECT min(id) FROM colony_assign.processes WHERE state >= 2 AND colony = 'c' AND workflow_id IS NULL), 0)",
            &[],
        )
        .await?;
        let running = [self.start_one().await?, self.start_one().await?];
        let finished: i64 = self
            .q1(
                "SELECT min(id) FROM colony_assign.processes WHERE state >= 2 AND colony = 'c'",
                &[],
            )
            .await?
            .get::<_, Option<i64>>(0)
            .unwrap_or(-1);
        let waiting: i64 = self
            .q1(
                "SELECT colony_assign.submit('c', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"w\"}}')",
                &[],
            )
            .await?
            .get(0);
        Ok(Fixture {
            running,
            finished,
            waiting,
        })
    }

    /// What close()/fail()/log() of `id` by `executor` (of `colony`) meets: P0002 for an
    /// unknown process or one of another colony, 55000 when it is not running, 42501 when
    /// another executor runs it.
    fn expect_finish(
        expect: &mut Expect,
        procs: &HashMap<i64, Proc>,
        id: Option<i64>,
        executor: &Name,
        colony: &Name,
    ) {
        let Some(id) = id else {
            expect.problem("22004");
            expect.tolerate("P0002");
            return;
        };
        match procs.get(&id) {
            None => expect.problem("P0002"),
            Some(p) if colony.0.as_ref().is_some_and(|c| *c != p.colony) => expect.problem("P0002"),
            Some(p) if p.state != 1 => expect.problem("55000"),
            Some(p) if p.assigned != executor.0 => expect.problem("42501"),
            Some(_) => {}
        }
    }
}

/// close / fail / close_many: bad ids, other executors and colonies, huge and odd outputs and
/// error lists, malformed batches.
#[test]
fn close_fail_close_many_any_input() {
    let ctx = Ctx::new(
        "adv_finish",
        "SELECT colony_assign.add_colony('d');
         SELECT colony_assign.add_executor('c', 'e', 't');
         SELECT colony_assign.add_executor('c', 'other', 't');
         SELECT colony_assign.add_executor('d', 'e', 't');",
    );
    ctx.rt.block_on(async {
        let id = ctx.start_one().await.unwrap();
        ctx.client
            .execute("SELECT colony_assign.close($1, 'e')", &[&id])
            .await
            .unwrap();
    });
    ctx.property(
        "close_fail_close_many_any_input",
        160,
        finish(),
        |ctx, action| async move {
            let fx = ctx.fixture().await?;
            match &action {
                Finish::Close { id, executor, output, colony } => {
                    let id = fx.id(id);
                    let text = output.as_ref().map(J::text);
                    let what = format!("close({id:?}, {executor:?}, {output:?}, {colony:?})");
                    let mut expect = Expect::default();
                    name_rule(&mut expect, executor);
                    text_rule(&mut expect, colony);
                    if let Some(t) = &text
                        && let Some(size) = parsed(&mut expect, ctx.jsonb_size(t).await?)
                        && size > MAX_DOCUMENT
                    {
                        expect.problem("54000");
                    }
                    let procs = ctx.processes(&id.into_iter().collect::<Vec<_>>()).await?;
                    Ctx::expect_finish(&mut expect, &procs, id, executor, colony);
                    let sql = "SELECT colony_assign.close($1, $2, $3::text::jsonb, $4)";
                    if ctx.call(&what, sql, &[&id, &executor.0, &text, &colony.0], &expect).await?.is_none() {
                        return Ok(());
                    }
                    let row = ctx
                        .q1("SELECT state, assigned_executor, ended_at IS NOT NULL,
                                    output IS NOT DISTINCT FROM $2::text::jsonb
                                    AND md5(output::text) IS NOT DISTINCT FROM md5($2::text::jsonb::text)
                             FROM colony_assign.process($1)", &[&id, &text])
                        .await?;
                    prop_assert_eq!(row.get::<_, i32>(0), 2, "{}: not SUCCESS", what);
                    prop_assert_eq!(row.get::<_, Option<String>>(1), executor.0.clone(), "{}", what);
                    prop_assert!(row.get::<_, bool>(2), "{}: no ended_at", what);
                    prop_assert!(row.get::<_, bool>(3), "{}: output not stored as given", what);
                }
                Finish::Fail { id, executor, errors, colony } => {
                    let id = fx.id(id);
                    let what = format!("fail({id:?}, {executor:?}, {errors:?}, {colony:?})");
                    let errors: Option<Vec<Option<String>>> =
                        errors.as_ref().map(|v| v.iter().map(|e| e.0.clone()).collect());
                    let mut expect = Expect::default();
                    name_rule(&mut expect, executor);
                    text_rule(&mut expect, colony);
                    if let Some(list) = &errors {
                        if list.iter().flatten().any(|e| e.contains('\0')) {
                            expect.problem("22021");
                        } else {
                            let size: i32 = ctx.q1("SELECT pg_column_size($1::text[])", &[list]).await?.get(0);
                            if size > MAX_DOCUMENT {
                                expect.problem("54000");
                            }
                        }
                    }
                    let procs = ctx.processes(&id.into_iter().collect::<Vec<_>>()).await?;
                    Ctx::expect_finish(&mut expect, &procs, id, executor, colony);
                    let sql = "SELECT colony_assign.fail($1, $2, $3, $4)";
                    if ctx.call(&what, sql, &[&id, &executor.0, &errors, &colony.0], &expect).await?.is_none() {
                        return Ok(());
                    }
                    let row = ctx
                        .q1("SELECT state, errors IS NOT DISTINCT FROM coalesce($2, '{}'::text[]) FROM colony_assign.process($1)",
                            &[&id, &errors])
                        .await?;
                    prop_assert_eq!(row.get::<_, i32>(0), 3, "{}: not FAILED", what);
                    prop_assert!(row.get::<_, bool>(1), "{}: errors not stored as given", what);
                }
                Finish::CloseMany { executor, batch, colony } => {
                    ctx.close_many_case(&fx, executor, batch, colony).await?;
                }
            }
            Ok(())
        },
    );
}

impl Ctx {
    async fn close_many_case(
        &self,
        fx: &Fixture,
        executor: &Name,
        batch: &Batch,
        colony: &Name,
    ) -> TestCaseResult {
        let doc = match batch {
            Batch::Null => None,
            Batch::Json(j) => Some(j.clone()),
            Batch::Items(items) => Some(J::Arr(
                items
                    .iter()
                    .map(|item| {
                        let mut pairs = Vec::new();
                        match &item.id {
                            ItemId::Absent => {}
                            ItemId::Pick(p) => pairs.push((
                                "id".to_owned(),
                                fx.id(p).map_or(J::Null, |id| J::Num(id.to_string())),
                            )),
                            ItemId::Json(j) => pairs.push(("id".to_owned(), j.clone())),
                        }
                        if let Some(o) = &item.output {
                            pairs.push(("output".to_owned(), o.clone()));
                        }
                        pairs.extend(item.extra.clone());
                        obj(pairs)
                    })
                    .collect(),
            )),
        };
        let text = doc.as_ref().map(J::text);
        let what = format!("close_many({executor:?}, {doc:?}, {colony:?})");
        let mut expect = Expect::default();
        name_rule(&mut expect, executor);
        text_rule(&mut expect, colony);
        // (id, output) of each distinct id, first occurrence, when the batch is well formed.
        let mut closes: Vec<(i64, Option<&J>)> = Vec::new();
        match (&doc, &text) {
            (Some(doc), Some(text)) => {
                if parsed(&mut expect, self.jsonb_size(text).await?).is_some() {
                    match V::J(doc).items() {
                        None => expect.problem("22023"),
                        Some(items) => {
                            if items.len() > MAX_CLOSES {
                                expect.problem("54000");
                            }
                            for item in items.iter().take(MAX_CLOSES + 1) {
                                let Some(fields) = item.fields() else {
                                    expect.problem("22023");
                                    continue;
                                };
                                if fields.iter().any(|(k, _)| *k != "id" && *k != "output") {
                                    expect.problem("22023");
                                }
                                let id_text = fields
                                    .iter()
                                    .find(|(k, _)| *k == "id")
                                    .and_then(|(_, v)| v.num());
                                let id = id_text
                                    .and_then(exact_int)
                                    .and_then(|i| i64::try_from(i).ok());
                                let output =
                                    fields.iter().find(|(k, _)| *k == "output").map(|(_, v)| *v);
                                let output = match output {
                                    None => None,
                                    Some(V::J(o)) => Some(o),
                                    Some(V::Opaque { .. }) => {
                                        expect.problem("22023");
                                        None
                                    }
                                };
                                if let Some(o) = output
                                    && let Some(size) =
                                        parsed(&mut expect, self.jsonb_size(&o.text()).await?)
                                    && size > MAX_DOCUMENT
                                {
                                    expect.problem("54000");
                                }
                                match id {
                                    None => expect.problem("22023"),
                                    Some(id) if closes.iter().any(|(i, _)| *i == id) => {}
                                    Some(id) => closes.push((id, output)),
                                }
                            }
                        }
                    }
                }
            }
            _ => expect.problem("22023"),
        }
        let ids: Vec<i64> = closes.iter().map(|(id, _)| *id).collect();
        let before = self.processes(&ids).await?;
        let sql = "SELECT process_id, closed, error FROM colony_assign.close_many($1, $2::text::jsonb, $3)";
        let Some(rows) = self
            .call(&what, sql, &[&executor.0, &text, &colony.0], &expect)
            .await?
        else {
            return Ok(());
        };
        let mut sorted = closes.clone();
        sorted.sort_by_key(|(id, _)| *id);
        let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        prop_assert_eq!(
            &got,
            &sorted.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            "{}: one row per distinct id, by id",
            what
        );
        let after = self.processes(&ids).await?;
        for (row, (id, output)) in rows.iter().zip(&sorted) {
            let mut one = Expect::default();
            Self::expect_finish(&mut one, &before, Some(*id), executor, colony);
            let closed: bool = row.get(1);
            let error: Option<String> = row.get(2);
            prop_assert_eq!(closed, !one.must_fail, "{}: item {}: closed", what, id);
            prop_assert_eq!(
                error.is_none(),
                closed,
                "{}: item {}: error {:?}",
                what,
                id,
                error
            );
            if !closed {
                prop_assert_eq!(
                    before.get(id).map(|p| &p.row),
                    after.get(id).map(|p| &p.row),
                    "{}: item {} was not closed but changed",
                    what,
                    id
                );
                continue;
            }
            prop_assert_eq!(after[id].state, 2, "{}: item {} not SUCCESS", what, id);
            {
                let text = output.map(J::text);
                let same: bool = self
                    .q1(
                        "SELECT output IS NOT DISTINCT FROM $2::text::jsonb FROM colony_assign.processes WHERE id = $1",
                        &[id, &text],
                    )
                    .await?
                    .get(0);
                prop_assert!(same, "{}: item {}: output not stored as given", what, id);
            }
        }
        Ok(())
    }
}

/// log / cancel / process / workflow with any ids, executors and messages.
#[derive(Clone, Debug)]
enum Touch {
    Log {
        id: Pick,
        executor: Name,
        message: Name,
        colony: Name,
    },
    Cancel {
        id: Pick,
    },
    Process {
        id: Pick,
    },
    Workflow {
        id: Option<i64>,
    },
}

#[test]
fn log_cancel_process_workflow_any_input() {
    let ctx = Ctx::new(
        "adv_log",
        "SELECT colony_assign.add_colony('d');
         SELECT colony_assign.add_executor('c', 'e', 't');
         SELECT colony_assign.add_executor('c', 'other', 't');
         SELECT colony_assign.submit_workflow('c', '[{\"funcname\": \"f\", \"nodename\": \"a\", \"conditions\": {\"executortype\": \"w\"}}]');",
    );
    ctx.rt.block_on(async {
        let id = ctx.start_one().await.unwrap();
        ctx.client
            .execute("SELECT colony_assign.close($1, 'e')", &[&id])
            .await
            .unwrap();
    });
    let message = prop_oneof![
        6 => text().prop_map(|t| Name(Some(t))),
        1 => Just(named(&"l".repeat(MAX_LOG))),
        1 => Just(named(&"l".repeat(MAX_LOG + 1))),
        1 => Just(named(&format!("{}é", "l".repeat(MAX_LOG - 1)))),
        1 => Just(Name(None)),
    ];
    let colony = prop_oneof![4 => Just(Name(None)), 2 => Just(named("c")), 1 => Just(named("d")), 1 => name_from(&["nope"])];
    let touch = prop_oneof![
        3 => (pick(), mostly("e", &["other", "ghost"]), message, colony)
            .prop_map(|(id, executor, message, colony)| Touch::Log { id, executor, message, colony }),
        2 => pick().prop_map(|id| Touch::Cancel { id }),
        1 => pick().prop_map(|id| Touch::Process { id }),
        1 => prop_oneof![Just(Some(1i64)), any::<i64>().prop_map(Some), Just(None)]
            .prop_map(|id| Touch::Workflow { id }),
    ];
    ctx.property(
        "log_cancel_process_workflow_any_input",
        192,
        touch,
        |ctx, touch| async move {
            let fx = ctx.fixture().await?;
            match &touch {
                Touch::Log {
                    id,
                    executor,
                    message,
                    colony,
                } => {
                    let id = fx.id(id);
                    let what = format!("log({id:?}, {executor:?}, {message:?}, {colony:?})");
                    let mut expect = Expect::default();
                    // The executor's name is checked first, as in every executor entry point.
                    name_rule(&mut expect, executor);
                    text_rule(&mut expect, colony);
                    match message.0.as_deref() {
                        None => expect.problem("22004"),
                        Some(m) if m.contains('\0') => expect.problem("22021"),
                        Some(m) if m.len() > MAX_LOG => expect.problem("54000"),
                        Some(_) => {}
                    }
                    let procs = ctx.processes(&id.into_iter().collect::<Vec<_>>()).await?;
                    Ctx::expect_finish(&mut expect, &procs, id, executor, colony);
                    let sql = "SELECT colony_assign.log($1, $2, $3, $4)";
                    if ctx
                        .call(
                            &what,
                            sql,
                            &[&id, &executor.0, &message.0, &colony.0],
                            &expect,
                        )
                        .await?
                        .is_none()
                    {
                        return Ok(());
                    }
                    let logged: Vec<String> = ctx
                        .q("SELECT message FROM colony_assign.logs($1)", &[&id])
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    prop_assert_eq!(
                        logged.last(),
                        message.0.as_ref(),
                        "{}: last log message",
                        what
                    );
                }
                Touch::Cancel { id } => {
                    let id = fx.id(id);
                    let what = format!("cancel({id:?})");
                    let mut expect = Expect::default();
                    let procs = ctx.processes(&id.into_iter().collect::<Vec<_>>()).await?;
                    match id.and_then(|id| procs.get(&id)) {
                        None => {
                            expect.problem("P0002");
                            expect.tolerate("22004");
                        }
                        Some(p) if p.state >= 2 => expect.problem("55000"),
                        Some(_) => {}
                    }
                    if ctx
                        .call(&what, "SELECT colony_assign.cancel($1)", &[&id], &expect)
                        .await?
                        .is_none()
                    {
                        return Ok(());
                    }
                    let state: i32 = ctx
                        .q1("SELECT state FROM colony_assign.process($1)", &[&id])
                        .await?
                        .get(0);
                    prop_assert_eq!(state, 4, "{}: not CANCELLED", what);
                }
                Touch::Process { id } => {
                    let id = fx.id(id);
                    let what = format!("process({id:?})");
                    let mut expect = Expect::default();
                    let procs = ctx.processes(&id.into_iter().collect::<Vec<_>>()).await?;
                    let known = id.and_then(|id| procs.get(&id));
                    if known.is_none() {
                        expect.problem("P0002");
                        expect.tolerate("22004");
                    }
                    let sql = "SELECT id, state FROM colony_assign.process($1)";
                    let Some(rows) = ctx.call(&what, sql, &[&id], &expect).await? else {
                        return Ok(());
                    };
                    prop_assert_eq!(rows[0].get::<_, Option<i64>>(0), id, "{}", what);
                    prop_assert_eq!(
                        rows[0].get::<_, i32>(1),
                        known.map_or(-1, |p| p.state),
                        "{}",
                        what
                    );
                }
                Touch::Workflow { id } => {
                    let what = format!("workflow({id:?})");
                    let mut expect = Expect::default();
                    let exists: bool = ctx
                        .q1(
                            "SELECT EXISTS (SELECT FROM colony_assign.workflows WHERE id = $1)",
                            &[id],
                        )
                        .await?
                        .get(0);
                    if !exists {
                        expect.problem("P0002");
                        expect.tolerate("22004");
                    }
                    let sql = "SELECT colony_assign.workflow($1)";
                    let Some(rows) = ctx.call(&what, sql, &[id], &expect).await? else {
                        return Ok(());
                    };
                    let graph: serde_json::Value = rows[0].get(0);
                    prop_assert_eq!(graph["id"].as_i64(), *id, "{}", what);
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Properties: administration, identity, channels
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum AdminCall {
    AddColony(Name),
    RemoveColony(Name),
    AddExecutor(Name, Name, Name, Name),
    RemoveExecutor(Name, Name),
    SetStrict(Name, Option<bool>),
    Configure(Name, Name, Name),
    Pause(Name),
    Resume(Name),
    Stats(Name),
    Channels(Name, Name),
    Heartbeat(Name, Name),
    AddAdmin(Name, Option<Vec<Name>>),
    RemoveAdmin(Name),
}

fn admin() -> BoxedStrategy<AdminCall> {
    let colony = || name_from(&["c", "c", "k1", "k2"]);
    let executor = || name_from(&["e", "x1", "x2"]);
    let kind = || name_from(&["t", "t", "u"]);
    let location = || {
        prop_oneof![
            3 => Just(Name(None)),
            1 => Just(named("")),
            2 => name_from(&["L", "M"]),
        ]
        .boxed()
    };
    let interval = || {
        let edges = vec![
            "1 minute",
            "0",
            "-1 second",
            "1 mon -40 days",
            "1 mon -1 minute",
            "1 microsecond",
            "178000000 years",
            "10000 years",
            "1000 years",
            "2147483647 days",
            "P1Y2M",
            "1e10 seconds",
            "banana",
            "",
            "1 minute\u{0}",
        ];
        prop_oneof![
            3 => Just(Name(None)),
            3 => select(edges).prop_map(named),
            2 => ("[0-9]{1,12}", select(vec!["seconds", "minutes", "days", "months", "years"]))
                .prop_map(|(n, unit)| named(&format!("{n} {unit}"))),
            1 => text().prop_map(|t| Name(Some(t))),
        ]
        .boxed()
    };
    prop_oneof![
        2 => colony().prop_map(AdminCall::AddColony),
        1 => colony().prop_map(AdminCall::RemoveColony),
        4 => (colony(), executor(), kind(), location())
            .prop_map(|(c, e, t, l)| AdminCall::AddExecutor(c, e, t, l)),
        2 => (colony(), executor()).prop_map(|(c, e)| AdminCall::RemoveExecutor(c, e)),
        1 => (colony(), weighted(0.9, any::<bool>())).prop_map(|(c, b)| AdminCall::SetStrict(c, b)),
        2 => (colony(), interval(), interval()).prop_map(|(c, s, r)| AdminCall::Configure(c, s, r)),
        1 => colony().prop_map(AdminCall::Pause),
        1 => colony().prop_map(AdminCall::Resume),
        1 => colony().prop_map(AdminCall::Stats),
        2 => (colony(), executor()).prop_map(|(c, e)| AdminCall::Channels(c, e)),
        1 => (colony(), executor()).prop_map(|(c, e)| AdminCall::Heartbeat(c, e)),
        1 => (name_from(&["a1", "a2"]), weighted(0.5, vec(name_from(&["c", "k1", "nope"]), 0..3)))
            .prop_map(|(a, c)| AdminCall::AddAdmin(a, c)),
        1 => name_from(&["a1", "a2"]).prop_map(AdminCall::RemoveAdmin),
    ]
    .boxed()
}

/// A channel name as documented: 37 bytes, `ca_<kind>_<32 hex>`.
fn is_channel(name: &str, kinds: &str) -> bool {
    name.len() == 37
        && name.starts_with("ca_")
        && kinds.contains(&name[3..4])
        && &name[4..5] == "_"
        && name[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Ctx {
    /// An interval argument: PostgreSQL's own cast refuses some (22xxx); positive ones only.
    async fn interval_rule(&self, expect: &mut Expect, value: &Name) -> TestCaseResult {
        let Some(v) = value.0.as_deref() else {
            return Ok(());
        };
        if v.contains('\0') {
            expect.problem("22021");
            return Ok(());
        }
        match self
            .client
            .query_one(
                "SELECT $1::text::interval <= interval '0' OR $1::text::interval > interval '10 years'",
                &[&v],
            )
            .await
        {
            Ok(row) if row.get::<_, bool>(0) => expect.problem("22023"),
            Ok(_) => {}
            Err(e) => {
                let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                prop_assert!(code.starts_with("22"), "interval cast of {:?}: {:?}", v, e);
                expect.problem("22");
            }
        }
        Ok(())
    }

    async fn admin_case(&self, action: &AdminCall) -> TestCaseResult {
        let what = format!("{action:?}");
        let mut expect = Expect::default();
        match action {
            AdminCall::AddColony(c) => {
                if let Some(c) = name_rule(&mut expect, c)
                    && self.colony_exists(c).await?
                {
                    expect.problem("23505");
                }
                let sql = "SELECT colony_assign.add_colony($1)";
                if self.call(&what, sql, &[&c.0], &expect).await?.is_some() {
                    prop_assert!(
                        self.colony_exists(c.0.as_deref().unwrap_or_default())
                            .await?,
                        "{}",
                        what
                    );
                }
            }
            AdminCall::RemoveColony(c) => {
                self.colony_arg(&mut expect, c).await?;
                let sql = "SELECT colony_assign.remove_colony($1)";
                if self.call(&what, sql, &[&c.0], &expect).await?.is_some() {
                    let name = c.0.as_deref().unwrap_or_default();
                    let left: i64 = self
                        .q1("SELECT (SELECT count(*) FROM colony_assign.colonies WHERE name = $1)
                                  + (SELECT count(*) FROM colony_assign.executors WHERE colony = $1)
                                  + (SELECT count(*) FROM colony_assign.processes WHERE colony = $1)", &[&name])
                        .await?
                        .get(0);
                    prop_assert_eq!(left, 0, "{}: something of the colony is left", what);
                }
            }
            AdminCall::AddExecutor(c, e, t, l) => {
                let colony = self.colony_arg(&mut expect, c).await?;
                let name = name_rule(&mut expect, e);
                name_rule(&mut expect, t);
                let location = l.0.as_deref().filter(|l| !l.is_empty());
                if location.is_some() {
                    name_rule(&mut expect, l);
                }
                if let (Some(c), Some(e)) = (colony, name)
                    && self.executor_exists(c, e).await?
                {
                    expect.problem("23505");
                }
                let sql = "SELECT colony_assign.add_executor($1, $2, $3, $4)";
                let Some(rows) = self
                    .call(&what, sql, &[&c.0, &e.0, &t.0, &l.0], &expect)
                    .await?
                else {
                    return Ok(());
                };
                let token: String = rows[0].get(0);
                prop_assert!(
                    token.len() == 68
                        && token.starts_with("cat_")
                        && token[4..].bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}: token {:?}",
                    what,
                    token
                );
                let me = self
                    .q("SELECT colony, executor, executor_type, location FROM colony_assign.authenticate($1)", &[&token])
                    .await?;
                prop_assert_eq!(me.len(), 1, "{}: the token authenticates", what);
                prop_assert_eq!(me[0].get::<_, Option<String>>(0), c.0.clone(), "{}", what);
                prop_assert_eq!(me[0].get::<_, Option<String>>(1), e.0.clone(), "{}", what);
                prop_assert_eq!(me[0].get::<_, Option<String>>(2), t.0.clone(), "{}", what);
                prop_assert_eq!(
                    me[0].get::<_, Option<String>>(3),
                    location.map(str::to_owned),
                    "{}",
                    what
                );
                let channels: Vec<String> = self
                    .q(
                        "SELECT * FROM colony_assign.channels($1, $2)",
                        &[&c.0, &e.0],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                prop_assert_eq!(
                    channels.len(),
                    if location.is_some() { 3 } else { 2 },
                    "{}: {:?}",
                    what,
                    channels
                );
                prop_assert!(
                    channels.iter().all(|ch| is_channel(ch, "lbn")),
                    "{}: {:?}",
                    what,
                    channels
                );
                let own: String = self
                    .q1(
                        "SELECT colony_assign.channel($1, $2, $3)",
                        &[&c.0, &t.0, &l.0],
                    )
                    .await?
                    .get(0);
                prop_assert!(
                    channels.contains(&own),
                    "{}: channel() {} not among channels() {:?}",
                    what,
                    own,
                    channels
                );
            }
            AdminCall::RemoveExecutor(c, e)
            | AdminCall::Channels(c, e)
            | AdminCall::Heartbeat(c, e) => {
                let colony = self.colony_arg(&mut expect, c).await?;
                if let (Some(c), Some(e)) = (colony, name_rule(&mut expect, e))
                    && !self.executor_exists(c, e).await?
                {
                    expect.problem("P0002");
                }
                let sql = match action {
                    AdminCall::RemoveExecutor(..) => "SELECT colony_assign.remove_executor($1, $2)",
                    AdminCall::Channels(..) => "SELECT * FROM colony_assign.channels($1, $2)",
                    _ => "SELECT colony_assign.heartbeat($1, $2)",
                };
                let Some(rows) = self.call(&what, sql, &[&c.0, &e.0], &expect).await? else {
                    return Ok(());
                };
                let (c, e) = (
                    c.0.as_deref().unwrap_or_default(),
                    e.0.as_deref().unwrap_or_default(),
                );
                match action {
                    AdminCall::RemoveExecutor(..) => {
                        prop_assert!(!self.executor_exists(c, e).await?, "{}: still there", what);
                        let running: i64 = self
                            .q1("SELECT count(*) FROM colony_assign.processes WHERE colony = $1 AND assigned_executor = $2 AND state = 1", &[&c, &e])
                            .await?
                            .get(0);
                        prop_assert_eq!(running, 0, "{}: its processes still run", what);
                    }
                    AdminCall::Channels(..) => {
                        prop_assert!(
                            (2..=3).contains(&rows.len()),
                            "{}: {} channels",
                            what,
                            rows.len()
                        );
                        for r in &rows {
                            let ch: String = r.get(0);
                            prop_assert!(is_channel(&ch, "lbn"), "{}: {:?}", what, ch);
                        }
                    }
                    _ => {
                        let fresh: bool = self
                            .q1("SELECT last_seen > now() - interval '1 minute' FROM colony_assign.executors WHERE colony = $1 AND name = $2", &[&c, &e])
                            .await?
                            .get(0);
                        prop_assert!(fresh, "{}: last_seen not refreshed", what);
                    }
                }
            }
            AdminCall::SetStrict(c, strict) => {
                self.colony_arg(&mut expect, c).await?;
                if strict.is_none() {
                    expect.problem("22004");
                }
                let sql = "SELECT colony_assign.set_strict($1, $2)";
                if self
                    .call(&what, sql, &[&c.0, strict], &expect)
                    .await?
                    .is_some()
                {
                    let now: bool = self
                        .q1("SELECT strict FROM colony_assign.stats($1)", &[&c.0])
                        .await?
                        .get(0);
                    prop_assert_eq!(Some(now), *strict, "{}", what);
                }
            }
            AdminCall::Configure(c, stale, retention) => {
                self.colony_arg(&mut expect, c).await?;
                self.interval_rule(&mut expect, stale).await?;
                self.interval_rule(&mut expect, retention).await?;
                let before = match c.0.as_deref().filter(|_| !expect.must_fail) {
                    Some(c) => Some(
                        self.q1("SELECT stale_after::text, retention::text FROM colony_assign.colonies WHERE name = $1", &[&c])
                            .await?,
                    ),
                    None => None,
                };
                let sql =
                    "SELECT colony_assign.configure($1, $2::text::interval, $3::text::interval)";
                if self
                    .call(&what, sql, &[&c.0, &stale.0, &retention.0], &expect)
                    .await?
                    .is_none()
                {
                    return Ok(());
                }
                let Some(before) = before else {
                    return Err(TestCaseError::fail(format!(
                        "{what}: succeeded outside the model"
                    )));
                };
                let row = self
                    .q1(
                        "SELECT stale_after = coalesce($2::text::interval, $4::text::interval),
                                retention = coalesce($3::text::interval, $5::text::interval)
                         FROM colony_assign.colonies WHERE name = $1",
                        &[
                            &c.0,
                            &stale.0,
                            &retention.0,
                            &before.get::<_, String>(0),
                            &before.get::<_, String>(1),
                        ],
                    )
                    .await?;
                prop_assert!(
                    row.get::<_, bool>(0) && row.get::<_, bool>(1),
                    "{}: not stored",
                    what
                );
            }
            AdminCall::Pause(c) | AdminCall::Resume(c) => {
                self.colony_arg(&mut expect, c).await?;
                let (sql, paused) = match action {
                    AdminCall::Pause(_) => ("SELECT colony_assign.pause($1)", true),
                    _ => ("SELECT colony_assign.resume($1)", false),
                };
                if self.call(&what, sql, &[&c.0], &expect).await?.is_some() {
                    let now: bool = self
                        .q1("SELECT paused FROM colony_assign.stats($1)", &[&c.0])
                        .await?
                        .get(0);
                    prop_assert_eq!(now, paused, "{}", what);
                }
            }
            AdminCall::Stats(c) => {
                self.colony_arg(&mut expect, c).await?;
                let sql = "SELECT executors, waiting + blocked + running + succeeded + failed + cancelled FROM colony_assign.stats($1)";
                let Some(rows) = self.call(&what, sql, &[&c.0], &expect).await? else {
                    return Ok(());
                };
                let truth = self
                    .q1(
                        "SELECT (SELECT count(*) FROM colony_assign.executors WHERE colony = $1),
                                (SELECT count(*) FROM colony_assign.processes WHERE colony = $1)",
                        &[&c.0],
                    )
                    .await?;
                prop_assert_eq!(
                    rows[0].get::<_, i64>(0),
                    truth.get::<_, i64>(0),
                    "{}: executors",
                    what
                );
                prop_assert_eq!(
                    rows[0].get::<_, i64>(1),
                    truth.get::<_, i64>(1),
                    "{}: processes",
                    what
                );
            }
            AdminCall::AddAdmin(a, colonies) => {
                if let Some(a) = name_rule(&mut expect, a) {
                    let exists: bool = self
                        .q1(
                            "SELECT EXISTS (SELECT FROM colony_assign.admins WHERE name = $1)",
                            &[&a],
                        )
                        .await?
                        .get(0);
                    if exists {
                        expect.problem("23505");
                    }
                }
                let list: Option<Vec<Option<String>>> = colonies
                    .as_ref()
                    .map(|v| v.iter().map(|n| n.0.clone()).collect());
                for c in colonies.iter().flatten() {
                    match c.0.as_deref() {
                        None => expect.problem("P0002"),
                        Some(c) if c.contains('\0') => expect.problem("22021"),
                        Some(c) if !self.colony_exists(c).await? => expect.problem("P0002"),
                        Some(_) => {}
                    }
                }
                let sql = "SELECT colony_assign.add_admin($1, $2)";
                let Some(rows) = self.call(&what, sql, &[&a.0, &list], &expect).await? else {
                    return Ok(());
                };
                let token: String = rows[0].get(0);
                prop_assert!(
                    token.starts_with("caa_") && token.len() == 68,
                    "{}: token {:?}",
                    what,
                    token
                );
            }
            AdminCall::RemoveAdmin(a) => {
                if let Some(a) = name_rule(&mut expect, a) {
                    let exists: bool = self
                        .q1(
                            "SELECT EXISTS (SELECT FROM colony_assign.admins WHERE name = $1)",
                            &[&a],
                        )
                        .await?
                        .get(0);
                    if !exists {
                        expect.problem("P0002");
                    }
                }
                self.call(
                    &what,
                    "SELECT colony_assign.remove_admin($1)",
                    &[&a.0],
                    &expect,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// add_colony / remove_colony / add_executor / remove_executor / set_strict / configure /
/// pause / resume / stats / channels / heartbeat / add_admin / remove_admin: sequences of
/// calls with any names (1 MB, unicode, empty, NULL), intervals and flags.
#[test]
fn administration_any_names() {
    let ctx = Ctx::new(
        "adv_admin",
        "SELECT colony_assign.add_executor('c', 'e', 't', 'L');
         SELECT colony_assign.submit('c', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"t\", \"locationname\": \"L\"}}');
         SELECT colony_assign.assign('c', 'e');",
    );
    ctx.property(
        "administration_any_names",
        96,
        vec(admin(), 1..6),
        |ctx, actions| async move {
            for action in &actions {
                ctx.admin_case(action).await?;
            }
            Ok(())
        },
    );
}

/// login(token): any token but a real one is 28000 and leaves the session as it was; the
/// executor entry points then act only as the logged-in executor.
#[test]
fn login_any_token() {
    let ctx = Ctx::new("adv_login", "");
    let role = format!("exec_{}", ctx.db.name);
    let (session, tokens) = ctx.rt.block_on(async {
        ctx.client
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" LOGIN IN ROLE colony_assign_executor;"
            ))
            .await
            .unwrap();
        let e1 = super::add_executor(&ctx.client, "e1", "t", None).await;
        let e2 = super::add_executor(&ctx.client, "e2", "t", None).await;
        (ctx.db.client_as(&role).await, [e1, e2])
    });
    let real = tokens.to_vec();
    let token = prop_oneof![
        4 => text().prop_map(|t| Name(Some(t))),
        2 => "[0-9a-f]{64}".prop_map(|h| named(&format!("cat_{h}"))),
        2 => (select(real.clone()), 0usize..68, any::<char>()).prop_map(|(t, i, c)| {
            // A real token with one character changed (or one appended).
            let mut chars: Vec<char> = t.chars().collect();
            if chars[i] == c { chars.push('0') } else { chars[i] = c }
            named(&chars.into_iter().collect::<String>())
        }),
        1 => select(real.clone()).prop_map(|t| named(&format!("{t} "))),
        1 => select(real.clone()).prop_map(|t| named(&t.to_uppercase())),
        2 => select(real).prop_map(|t| named(&t)),
        1 => Just(Name(None)),
    ];
    let session = &session;
    let tokens = &tokens;
    ctx.property("login_any_token", 160, token, |ctx, token| async move {
        // As whom the session acts: which of e1, e2 it may heartbeat for (42501 otherwise).
        let acting = || async {
            let mut who = Vec::new();
            for e in ["e1", "e2"] {
                match session
                    .query("SELECT colony_assign.heartbeat('c', $1)", &[&e])
                    .await
                {
                    Ok(_) => who.push(e),
                    Err(err) => prop_assert_eq!(
                        err.code().map(|c| c.code()),
                        Some("42501"),
                        "heartbeat as {} from a session not logged in as it: {:?}",
                        e,
                        err
                    ),
                }
            }
            Ok::<_, TestCaseError>(who)
        };
        let before = acting().await?;
        let what = format!("login({token:?})");
        let mut expect = Expect::default();
        let owner = tokens.iter().position(|t| Some(t) == token.0.as_ref());
        match token.0.as_deref() {
            None => expect.problem("22004"),
            Some(t) if t.contains('\0') => expect.problem("22021"),
            Some(_) if owner.is_none() => expect.problem("28000"),
            Some(_) => {}
        }
        // The call runs on the executor role's session; the tables are checked through ours.
        let state = ctx.state().await?;
        let result = session
            .query(
                "SELECT kind, colony, name FROM colony_assign.login($1)",
                &[&token.0],
            )
            .await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().map_or("none".to_owned(), |c| c.code().to_owned()),
        };
        *ctx.outcomes.borrow_mut().entry(outcome).or_default() += 1;
        match result {
            Ok(rows) => {
                prop_assert!(
                    !expect.must_fail,
                    "{}: succeeded, but the contract says {}",
                    what,
                    expect
                );
                let name = ["e1", "e2"][owner.unwrap_or(0)];
                prop_assert_eq!(
                    rows[0].get::<_, Option<String>>(0),
                    Some("executor".to_owned()),
                    "{}",
                    what
                );
                prop_assert_eq!(
                    rows[0].get::<_, Option<String>>(1),
                    Some("c".to_owned()),
                    "{}",
                    what
                );
                prop_assert_eq!(
                    rows[0].get::<_, Option<String>>(2),
                    Some(name.to_owned()),
                    "{}",
                    what
                );
                prop_assert_eq!(acting().await?, vec![name], "{}: acts as", what);
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                prop_assert!(
                    expect.admits(&code),
                    "{}: refused with {:?} ({:?}), but the contract says {}",
                    what,
                    code,
                    e,
                    expect
                );
                match session.query_one("SELECT 1", &[]).await {
                    Ok(_) => {}
                    Err(e) => {
                        return Err(TestCaseError::fail(format!(
                            "{what}: session unusable: {e:?}"
                        )));
                    }
                }
                prop_assert_eq!(ctx.state().await?, state, "{}: changed the tables", what);
                prop_assert_eq!(
                    acting().await?,
                    before,
                    "{}: a refused login changed who the session acts as",
                    what
                );
            }
        }
        Ok(())
    });
}

/// channel(colony, executor_type, location): any input gives a 37-byte `ca_[lb]_<32 hex>`
/// name, the same for the same input, different for different keys.
#[test]
fn channel_any_input() {
    let ctx = Ctx::new("adv_channel", "");
    let part = || name_from(&["c", "t", "L", "ca_", "_"]);
    ctx.property(
        "channel_any_input",
        256,
        ((part(), part(), part()), (part(), part(), part())),
        |ctx, (a, b)| async move {
            let mut names = Vec::new();
            for (colony, kind, location) in [&a, &b] {
                let what = format!("channel({colony:?}, {kind:?}, {location:?})");
                let mut expect = Expect::default();
                if colony.0.is_none() || kind.0.is_none() {
                    expect.problem("22004");
                }
                text_rule(&mut expect, colony);
                text_rule(&mut expect, kind);
                text_rule(&mut expect, location);
                let sql =
                    "SELECT colony_assign.channel($1, $2, $3), colony_assign.channel($1, $2, $3)";
                let Some(rows) = ctx
                    .call(&what, sql, &[&colony.0, &kind.0, &location.0], &expect)
                    .await?
                else {
                    return Ok(());
                };
                let (one, two): (String, String) = (rows[0].get(0), rows[0].get(1));
                let broadcast = location.0.as_deref().is_none_or(str::is_empty);
                prop_assert!(
                    is_channel(&one, if broadcast { "b" } else { "l" }),
                    "{}: {:?}",
                    what,
                    one
                );
                prop_assert_eq!(&one, &two, "{}: not deterministic", what);
                names.push(one);
            }
            let key = |(c, t, l): &(Name, Name, Name)| {
                (c.clone(), t.clone(), l.0.clone().filter(|l| !l.is_empty()))
            };
            if key(&a) != key(&b) {
                prop_assert_ne!(&names[0], &names[1], "{:?} and {:?} share a channel", a, b);
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions: defects the properties found, each with the input that showed it.
// ---------------------------------------------------------------------------------------------

impl Ctx {
    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt.block_on(f)
    }
}

/// An error as SQLSTATE and message (pgrx adds whole backtraces to XX000 details).
fn brief(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// close_many() once read each output through serde_json's f64s (big integers and long
/// decimals came back rounded); it stores them exactly, as close() does.
#[test]
fn close_many_stores_outputs_exactly_as_close_does() {
    let ctx = Ctx::new(
        "adv_defect_rewrite",
        "SELECT colony_assign.add_executor('c', 'e', 't')",
    );
    let output = r#"{"big": 123456789012345678901234567890, "precise": 0.1000000000000000055511151231257827}"#;
    ctx.block(async {
        let a = ctx.start_one().await.unwrap();
        let b = ctx.start_one().await.unwrap();
        ctx.client
            .execute(
                "SELECT colony_assign.close($1, 'e', $2::text::jsonb)",
                &[&a, &output],
            )
            .await
            .unwrap();
        let batch = format!(r#"[{{"id": {b}, "output": {output}}}]"#);
        ctx.client
            .execute(
                "SELECT * FROM colony_assign.close_many('e', $1::text::jsonb)",
                &[&batch],
            )
            .await
            .unwrap();
        let stored: Vec<String> = ctx
            .client
            .query(
                "SELECT output::text FROM colony_assign.processes WHERE id IN ($1, $2) ORDER BY id",
                &[&a, &b],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            stored[0], stored[1],
            "close() stored {}, close_many() {}",
            stored[0], stored[1]
        );
    });
}

/// close_many() once refused, as "closes must be a JSON array", outputs that close() accepts:
/// nested more than 128 levels, or holding a number beyond f64 (1e400).
#[test]
fn close_many_accepts_every_output_close_accepts() {
    let ctx = Ctx::new(
        "adv_defect_refuses",
        "SELECT colony_assign.add_executor('c', 'e', 't')",
    );
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for output in [deep.as_str(), "1e400"] {
        ctx.block(async {
            let id = ctx.start_one().await.unwrap();
            ctx.client
                .execute(
                    "SELECT colony_assign.close($1, 'e', $2::text::jsonb)",
                    &[&id, &output],
                )
                .await
                .expect("close() accepts it");
            let id = ctx.start_one().await.unwrap();
            let batch = format!(r#"[{{"id": {id}, "output": {output}}}]"#);
            let closed = ctx
                .client
                .query_one(
                    "SELECT closed FROM colony_assign.close_many('e', $1::text::jsonb)",
                    &[&batch],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .map_err(|e| brief(&e));
            assert!(
                matches!(closed, Ok(true)),
                "close_many() of output {}: {closed:?}",
                short(output)
            );
        });
    }
}

/// Integer fields were once read through f64: a non-integer whose nearest f64 is integral
/// passed as that integer (spec fields and close_many ids), and 2^63 became i64::MAX. They are
/// 22023 now.
#[test]
fn non_integers_fail_the_integer_checks() {
    let ctx = Ctx::new(
        "adv_defect_numbers",
        "SELECT colony_assign.add_executor('c', 'e', 't')",
    );
    ctx.block(async {
        for number in ["1e-400", "50000.0000000000000001", "0.00000000000000000001"] {
            let spec = format!(r#"{{"funcname": "f", "priority": {number}, "conditions": {{"executortype": "t"}}}}"#);
            let result = ctx
                .client
                .query("SELECT colony_assign.submit('c', $1::text::jsonb)", &[&spec])
                .await;
            assert_eq!(
                result.as_ref().err().and_then(|e| e.code()).map(|c| c.code()),
                Some("22023"),
                "priority {number} is not an integer: {:?}",
                result.as_ref().map(|_| "accepted").map_err(brief)
            );
        }
        for id in ["9223372036854775808", "1e-400"] {
            let batch = format!(r#"[{{"id": {id}}}]"#);
            let result = ctx
                .client
                .query("SELECT * FROM colony_assign.close_many('e', $1::text::jsonb)", &[&batch])
                .await;
            assert_eq!(
                result.as_ref().err().and_then(|e| e.code()).map(|c| c.code()),
                Some("22023"),
                "close_many id {id} is not a bigint: {:?}",
                result
                    .as_ref()
                    .map(|rows| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>())
                    .map_err(brief)
            );
        }
    });
}

/// configure() once accepted any positive interval, but reap() computes now() - stale_after
/// and now() - retention: past ~6,000 years that is out of range, and reap() — the background
/// worker's too — then failed with 22008 for every colony of the database. At most 10 years now.
#[test]
fn configure_refuses_intervals_that_would_break_reap() {
    let ctx = Ctx::new(
        "adv_defect_configure",
        "SELECT colony_assign.add_colony('other')",
    );
    ctx.block(async {
        for (stale, retention) in [(Some("10000 years"), None), (None, Some("178000000 years"))] {
            let configured = ctx
                .client
                .query(
                    "SELECT colony_assign.configure('c', $1::text::interval, $2::text::interval)",
                    &[&stale, &retention],
                )
                .await;
            let reaped = ctx
                .client
                .query("SELECT * FROM colony_assign.reap()", &[])
                .await;
            assert!(
                configured.is_err() || reaped.is_ok(),
                "configure('c', {stale:?}, {retention:?}) was accepted, then reap() failed: {:?}",
                reaped.err().map(|e| brief(&e))
            );
            ctx.client
                .execute(
                    "SELECT colony_assign.configure('c', '2 minutes', '7 days')",
                    &[],
                )
                .await
                .unwrap();
        }
    });
}

/// A NULL colony or executor is 22004 ("a required argument is NULL"). heartbeat() (for every
/// session) and log() (for a session logged in as an executor) once handed it to `_acting_as`,
/// whose Rust arguments were not nullable (XX000), and channels() answered a NULL colony with
/// P0002.
#[test]
fn null_names_are_22004_not_internal_errors() {
    let ctx = Ctx::new(
        "adv_defect_null",
        "SELECT colony_assign.add_executor('c', 'e', 't')",
    );
    let role = format!("exec_{}", ctx.db.name);
    ctx.block(async {
        ctx.client
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" LOGIN IN ROLE colony_assign_executor;"
            ))
            .await
            .unwrap();
        let id = ctx.start_one().await.unwrap();
        let token: String = ctx
            .client
            .query_one("SELECT colony_assign.add_executor('c', 'e2', 't')", &[])
            .await
            .unwrap()
            .get(0);
        let executor = ctx.db.client_as(&role).await;
        executor
            .execute("SELECT colony_assign.login($1)", &[&token])
            .await
            .unwrap();
        let log = format!("SELECT colony_assign.log({id}, NULL, 'm')");
        let cases: [(&Client, &str, &[&str]); 6] = [
            (&ctx.client, "SELECT colony_assign.heartbeat(NULL, 'e')", &["22004"]),
            (&ctx.client, "SELECT colony_assign.heartbeat('c', NULL)", &["22004"]),
            (&ctx.client, "SELECT * FROM colony_assign.channels(NULL, 'e')", &["22004"]),
            (&executor, "SELECT colony_assign.heartbeat(NULL, 'e2')", &["22004", "42501"]),
            (&executor, "SELECT colony_assign.heartbeat('c', NULL)", &["22004", "42501"]),
            (&executor, &log, &["22004", "42501"]),
        ];
        let mut wrong = Vec::new();
        for (client, sql, codes) in cases {
            let got = client.query(sql, &[]).await;
            let code = got.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_owned());
            if !code.as_deref().is_some_and(|c| codes.contains(&c)) {
                let got = got.map(|_| "ok").map_err(|e| brief(&e));
                wrong.push(format!("{sql}: {code:?}, expected one of {codes:?}: {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    });
}

#[test]
fn model_reads_numbers_as_decimals() {
    assert_eq!(exact_int("1.0"), Some(1));
    assert_eq!(exact_int("1e2"), Some(100));
    assert_eq!(exact_int("5.0e4"), Some(50_000));
    assert_eq!(exact_int("-0"), Some(0));
    assert_eq!(exact_int("0.00000000000000000000000000001e29"), Some(1));
    assert_eq!(exact_int("1.5"), None);
    assert_eq!(exact_int("1e-400"), None);
    assert_eq!(exact_int("50000.0000000000000001"), None);
    assert_eq!(exact_int("1e400"), None);
    assert!(
        rounds_into_bigint("-9223372036854775809") && rounds_into_bigint("9223372036854775808")
    );
    assert!(!rounds_into_bigint("-9223372036854775808") && !rounds_into_bigint("1.5"));
    let deep = J::Deep {
        depth: 3,
        object: true,
    };
    assert_eq!(deep.text(), r#"{"d":{"d":{"d":1}}}"#);
    assert_eq!(J::Esc("a😀".into()).text(), r#""\u0061\ud83d\ude00""#);
    let doc = obj(vec![("a".into(), J::Null), ("a".into(), J::Bool(true))]);
    assert_eq!(doc.text(), r#"{"a":true}"#);
}
