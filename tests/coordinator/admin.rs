//! The admin and read API over real HTTP: admin tokens, colonies and executors, colony control,
//! cancel, listings with keyset pages, scopes, revocation, and bad input (a JSON 4xx that
//! changes nothing). The typed client (colony-client's admin calls) drives part of it.

use super::{add_executor, count, setup};
use colony_client::{Client, ProcessFilter, ProcessOrder, State, Url};
use e2e::{Coordinator, HttpExecutor, eventually, fingerprint, spec};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tokio_postgres::{AsyncMessage, NoTls};

async fn add_admin(
    client: &tokio_postgres::Client,
    name: &str,
    colonies: Option<&[&str]>,
) -> String {
    let colonies: Option<Vec<&str>> = colonies.map(<[&str]>::to_vec);
    client
        .query_one(
            "SELECT colony_assign.add_admin($1, $2)",
            &[&name, &colonies],
        )
        .await
        .unwrap()
        .get(0)
}

/// One request: its status and JSON body (Null when empty).
async fn call(
    coordinator: &Coordinator,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = coordinator.http.request(method, coordinator.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

fn client_of(coordinator: &Coordinator, token: &str) -> Client {
    Client::new(vec![Url::parse(&coordinator.base).unwrap()], token).unwrap()
}

fn api_status(result: colony_client::Result<impl std::fmt::Debug>) -> Option<u16> {
    result.err().and_then(|e| e.status())
}

/// Submits `n` specs into `colony` in one call; their ids.
async fn submit_n(client: &tokio_postgres::Client, colony: &str, specs: Value) -> Vec<i64> {
    client
        .query(
            "SELECT colony_assign.submit_many($1, $2)",
            &[&colony, &specs],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn admins_manage_colonies_executors_and_processes_over_http() {
    // The coordinator connects as a role with colony_assign_coordinator only: everything an
    // admin token does goes through the admin_* functions, which check the token themselves.
    let (db, client, _) = setup("coord_admin_manage", 0, &[]).await;
    client
        .batch_execute(
            "DROP ROLE IF EXISTS coord_admin_manage; \
             CREATE ROLE coord_admin_manage LOGIN IN ROLE colony_assign_coordinator",
        )
        .await
        .unwrap();
    let mut config = db.config();
    config.user("coord_admin_manage");
    let coordinator =
        Coordinator::start_with_conninfo(&testkit::conninfo(&config), "coord_admin_manage-r0", &[])
            .await;
    let as_coordinator = db.client_as("coord_admin_manage").await;
    let refused = as_coordinator
        .query_one("SELECT colony_assign.add_colony('sneaky')", &[])
        .await;
    assert_eq!(
        e2e::sqlstate(refused),
        "42501",
        "the role alone cannot administer"
    );

    let root = add_admin(&client, "root", None).await;
    let admin = client_of(&coordinator, &root);

    admin.add_colony("k").await.unwrap();
    assert_eq!(api_status(admin.add_colony("k").await), Some(409));
    let names: Vec<String> = admin
        .colonies(None, None)
        .await
        .unwrap()
        .colonies
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c", "k"]);
    // Pages of one: the cursor walks the names.
    let first = admin.colonies(None, Some(1)).await.unwrap();
    assert_eq!(first.colonies[0].name, "c");
    let second = admin
        .colonies(first.next.as_deref(), Some(1))
        .await
        .unwrap();
    assert_eq!(second.colonies[0].name, "k");
    let last = admin
        .colonies(second.next.as_deref(), Some(1))
        .await
        .unwrap();
    assert!(last.colonies.is_empty() && last.next.is_none());

    // A new executor's token works at once, for its colony.
    let created = admin
        .add_executor("k", "gpu-1", "gpu", Some("edge"))
        .await
        .unwrap();
    assert_eq!(
        (
            created.colony.as_str(),
            created.name.as_str(),
            created.executor_type.as_str()
        ),
        ("k", "gpu-1", "gpu")
    );
    assert_eq!(created.location.as_deref(), Some("edge"));
    assert!(created.token.starts_with("cat_"));
    assert_eq!(
        api_status(admin.add_executor("k", "gpu-1", "gpu", None).await),
        Some(409)
    );
    let executor = HttpExecutor::new(&coordinator, &created.token);
    let ids = submit_n(
        &client,
        "k",
        json!([
            spec("gpu", json!({"locationname": "edge"}), json!({})),
            spec("gpu", json!({"locationname": "edge"}), json!({})),
            spec("gpu", json!({}), json!({})),
        ]),
    )
    .await;
    let taken = executor.assign("k", 5, 1).await;
    assert_eq!(testkit::ids(&taken), [ids[0]]);

    let executors = admin.executors("k", None, None).await.unwrap();
    assert_eq!(executors.executors.len(), 1);
    let status = &executors.executors[0];
    assert_eq!(status.name, "gpu-1");
    assert!(status.alive);
    assert_eq!(status.running, 1);
    assert!(executors.next.is_none());

    let queues = admin.queues("k").await.unwrap();
    let summary: Vec<(Option<&str>, i64)> = queues
        .iter()
        .map(|q| (q.location.as_deref(), q.waiting))
        .collect();
    assert_eq!(summary, [(None, 1), (Some("edge"), 1)]);
    assert!(
        queues
            .iter()
            .all(|q| q.executor_type == "gpu" && q.oldest_age_s >= 0.0)
    );

    // Paused: a long-poll gets nothing though work waits; resumed: it gets it.
    admin.pause("k").await.unwrap();
    admin.pause("k").await.unwrap();
    let colony = |name: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .colonies(None, None)
                .await
                .unwrap()
                .colonies
                .into_iter()
                .find(|c| c.name == name)
                .unwrap()
        }
    };
    assert!(colony("k").await.paused);
    assert!(executor.assign("k", 0, 1).await.is_empty());
    admin.resume("k").await.unwrap();
    assert!(!colony("k").await.paused);
    assert_eq!(testkit::ids(&executor.assign("k", 5, 1).await), [ids[1]]);

    admin.set_strict("k", true).await.unwrap();
    assert!(colony("k").await.strict);
    admin.set_strict("k", false).await.unwrap();
    assert!(!colony("k").await.strict);

    // Cancel: by the admin, and (DESIGN.md) by an executor token of the colony; twice is 409.
    admin.cancel(ids[2]).await.unwrap();
    assert_eq!(admin.process(ids[2]).await.unwrap().state, State::Cancelled);
    assert_eq!(api_status(admin.cancel(ids[2]).await), Some(409));
    let as_executor = client_of(&coordinator, &created.token);
    let more = submit_n(&client, "k", json!([spec("gpu", json!({}), json!({}))])).await;
    as_executor.cancel(more[0]).await.unwrap();
    assert_eq!(
        admin.process(more[0]).await.unwrap().state,
        State::Cancelled
    );
    // Reads that executors make work with admin tokens too.
    assert_eq!(admin.stats("k").await.unwrap().cancelled, 2);

    // Removing the executor: its running processes go back, its token stops working.
    admin.remove_executor("k", "gpu-1").await.unwrap();
    assert_eq!(
        api_status(admin.remove_executor("k", "gpu-1").await),
        Some(404)
    );
    let running = count(
        &client,
        "SELECT count(*) FROM colony_assign.processes WHERE colony = 'k' AND state = 1",
    )
    .await;
    assert_eq!(running, 0);
    eventually("the removed executor's token is refused", || {
        let coordinator = &coordinator;
        let token = created.token.clone();
        async move {
            call(
                coordinator,
                Method::GET,
                "/v1/colonies/k/stats",
                Some(&token),
                None,
            )
            .await
            .0 == 401
        }
    })
    .await;

    admin.remove_colony("k").await.unwrap();
    assert_eq!(api_status(admin.remove_colony("k").await), Some(404));
    let names: Vec<String> = admin
        .colonies(None, None)
        .await
        .unwrap()
        .colonies
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c"]);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM colony_assign.processes WHERE colony = 'k'"
        )
        .await,
        0
    );
}

/// Names are data: quotes, SQL, unicode and slashes round-trip through paths and bodies.
#[tokio::test]
async fn hostile_but_valid_names_are_just_names() {
    let (_db, client, coordinators) = setup("coord_admin_names", 1, &[]).await;
    let coordinator = &coordinators[0];
    let root = add_admin(&client, "root", None).await;
    let admin = client_of(coordinator, &root);
    for name in [
        "a\"b'c; DROP TABLE colony_assign.processes; --",
        "ünïcødé ☃ 名前",
        "with/slash and %20 and ?q=1#f",
        &"x".repeat(255),
    ] {
        admin.add_colony(name).await.unwrap();
        let created = admin
            .add_executor(name, name, name, Some(name))
            .await
            .unwrap();
        assert_eq!(created.name, name);
        let listed = admin.executors(name, None, None).await.unwrap();
        assert_eq!(listed.executors[0].location.as_deref(), Some(name));
        admin.pause(name).await.unwrap();
        admin.remove_executor(name, name).await.unwrap();
        admin.remove_colony(name).await.unwrap();
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM colony_assign.colonies").await,
        1
    );
}

/// A page of `colony`'s processes through HTTP with `query` (no leading `?`).
async fn page(coordinator: &Coordinator, token: &str, colony: &str, query: &str) -> Value {
    let (status, body) = call(
        coordinator,
        Method::GET,
        &format!("/v1/colonies/{colony}/processes?{query}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// Every page of a listing, following `next`; the ids in order.
async fn walk(coordinator: &Coordinator, token: &str, colony: &str, query: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = query.to_owned();
        if let Some(after) = &after {
            q.push_str(&format!("&after={after}"));
        }
        let body = page(coordinator, token, colony, &q).await;
        ids.extend(
            body["processes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return ids,
        }
    }
}

async fn ids_where(client: &tokio_postgres::Client, sql: &str) -> Vec<i64> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn listings_are_keyset_pages_stable_under_inserts_and_filters_select_exactly() {
    let (_db, client, coordinators) = setup("coord_admin_listing", 1, &[]).await;
    let coordinator = &coordinators[0];
    let root = add_admin(&client, "root", None).await;
    // Several transactions (so submitted_at differs between groups), types and locations.
    for group in 0..5 {
        let specs: Vec<Value> = (0..50)
            .map(|i| {
                let location = if i % 2 == 0 { "edge" } else { "" };
                spec(
                    if i % 3 == 0 { "gpu" } else { "t" },
                    json!({"locationname": location}),
                    json!({"label": format!("g{group}")}),
                )
            })
            .collect();
        submit_n(&client, "c", Value::Array(specs)).await;
    }
    let token = add_executor(&client, "c", "e", "t", None).await;
    let executor = HttpExecutor::new(coordinator, &token);
    let running = executor.assign("c", 5, 20).await;
    for process in &running[..8] {
        executor
            .close(process["id"].as_i64().unwrap(), json!(1))
            .await;
    }
    let wf = client
        .query_one(
            "SELECT colony_assign.submit_workflow('c', $1)",
            &[&json!([
                spec("t", json!({}), json!({"nodename": "a"})),
                spec(
                    "t",
                    json!({"dependencies": ["a"]}),
                    json!({"nodename": "b"})
                )
            ])],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    // Another colony's processes never show.
    client
        .execute("SELECT colony_assign.add_colony('d')", &[])
        .await
        .unwrap();
    submit_n(&client, "d", json!([spec("t", json!({}), json!({}))])).await;

    let newest_first =
        "SELECT id FROM colony_assign.processes WHERE colony = 'c' AND {} ORDER BY id DESC";
    let expect = |filter: &str| {
        let sql = newest_first.replace("{}", filter);
        let client = &client;
        async move { ids_where(client, &sql).await }
    };
    let all = expect("true").await;
    assert_eq!(all.len(), 252);

    // Paging while processes are submitted: every original one exactly once, in order; the
    // new ones (newer than the first page) never appear in later pages.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut added = Vec::new();
    loop {
        let mut q = "limit=40".to_owned();
        if let Some(a) = &after {
            q.push_str(&format!("&after={a}"));
        }
        let body = page(coordinator, &root, "c", &q).await;
        let processes = body["processes"].as_array().unwrap();
        assert!(processes.len() <= 40);
        for p in processes {
            // Summaries: no spec, input, output or errors.
            assert!(p.get("spec").is_none() && p.get("output").is_none(), "{p}");
            assert_eq!(p["colony"], "c");
            seen.push(p["id"].as_i64().unwrap());
        }
        added.extend(submit_n(&client, "c", json!([spec("t", json!({}), json!({}))])).await);
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all, "pages in order, each process once");
    assert!(added.iter().all(|id| !seen.contains(id)));

    // Filters select exactly what SQL does, across pages of 7.
    let cases = [
        ("state=running", "state = 1"),
        ("state=SUCCESS", "state = 2"),
        (
            "state=0&executortype=gpu",
            "state = 0 AND executor_type = 'gpu'",
        ),
        ("location=edge", "location = 'edge'"),
        ("executor=e", "assigned_executor = 'e'"),
        (
            "executortype=t&state=1",
            "executor_type = 't' AND state = 1",
        ),
        (&*format!("workflow={wf}"), &*format!("workflow_id = {wf}")),
    ];
    for (query, filter) in cases {
        let got = walk(coordinator, &root, "c", &format!("limit=7&{query}")).await;
        let want = expect(filter).await;
        assert!(!want.is_empty(), "{query} selects something");
        assert_eq!(got, want, "{query}");
    }
    // A time range: [since, until) of submission times.
    let bounds = client
        .query_one(
            "SELECT to_jsonb(min(submitted_at)) #>> '{}', to_jsonb(max(submitted_at)) #>> '{}'
             FROM colony_assign.processes WHERE colony = 'c' AND label IN ('g1', 'g3')",
            &[],
        )
        .await
        .unwrap();
    let (since, until): (String, String) = (bounds.get(0), bounds.get(1));
    let encode = |t: &str| t.replace('+', "%2B").replace(':', "%3A");
    let got = walk(
        coordinator,
        &root,
        "c",
        &format!("limit=9&since={}&until={}", encode(&since), encode(&until)),
    )
    .await;
    let want = ids_where(
        &client,
        &format!(
            "SELECT id FROM colony_assign.processes WHERE colony = 'c' AND submitted_at >= '{since}' AND submitted_at < '{until}' ORDER BY id DESC"
        ),
    )
    .await;
    assert!(want.len() >= 100, "{since} .. {until}");
    assert_eq!(got, want);

    // Finished processes, most recently ended first, through the typed client.
    let admin = client_of(coordinator, &root);
    let mut filter = ProcessFilter {
        order: ProcessOrder::Ended,
        limit: Some(3),
        ..ProcessFilter::default()
    };
    let mut ended = Vec::new();
    loop {
        let page = admin.processes("c", &filter).await.unwrap();
        ended.extend(page.processes.iter().map(|p| p.id));
        assert!(page.processes.iter().all(|p| p.ended_at.is_some()));
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    let want = ids_where(
        &client,
        "SELECT id FROM colony_assign.processes WHERE colony = 'c' AND state >= 2 ORDER BY ended_at DESC, id DESC",
    )
    .await;
    assert_eq!(ended.len(), 8);
    assert_eq!(ended, want);
    // A cursor belongs to its order.
    let submitted_cursor = page(coordinator, &root, "c", "limit=1").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = call(
        coordinator,
        Method::GET,
        &format!("/v1/colonies/c/processes?order=ended&after={submitted_cursor}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["sqlstate"].as_str()),
        (400, Some("22023"))
    );
}

#[tokio::test]
async fn a_page_examines_a_bounded_number_of_rows_and_goes_on_from_there() {
    let (_db, client, coordinators) = setup("coord_admin_budget", 1, &[]).await;
    let coordinator = &coordinators[0];
    let root = add_admin(&client, "root", None).await;
    // One cancelled process, then 12,000 newer waiting ones: a page examines at most 10,000.
    let old = submit_n(&client, "c", json!([spec("t", json!({}), json!({}))])).await[0];
    client
        .execute("SELECT colony_assign.cancel($1)", &[&old])
        .await
        .unwrap();
    let specs: Vec<Value> = (0..12_000)
        .map(|_| spec("t", json!({}), json!({})))
        .collect();
    submit_n(&client, "c", Value::Array(specs)).await;

    let first = page(coordinator, &root, "c", "state=cancelled").await;
    assert_eq!(
        first["processes"],
        json!([]),
        "nothing among the first 10,000"
    );
    let next = first["next"]
        .as_str()
        .expect("a cursor to go on from")
        .to_owned();
    let second = page(
        coordinator,
        &root,
        "c",
        &format!("state=cancelled&after={next}"),
    )
    .await;
    let ids: Vec<i64> = second["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [old]);
    assert_eq!(second["next"], Value::Null);
}

/// The plans of the statements list_processes() runs, logged by auto_explain as NOTICEs.
async fn plans_of(db: &e2e::TestDb, call_sql: &str) -> Vec<String> {
    let (client, mut connection) = db.config().connect(NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                let _ = tx.send(notice.message().to_owned());
            }
        }
    });
    client
        .batch_execute(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_analyze = on;
             SET auto_explain.log_timing = off;
             SET auto_explain.log_level = notice;",
        )
        .await
        .unwrap();
    client.batch_execute(call_sql).await.unwrap();
    // Dropping the client ends the connection, and with it the notices.
    drop(client);
    let mut plans = Vec::new();
    while let Some(plan) = rx.recv().await {
        plans.push(plan);
    }
    plans
}

/// The plan of the statement whose text contains `marker`, and how many rows its scan of
/// `index` returned.
fn scan_of<'a>(plans: &'a [String], marker: &str, index: &str) -> (&'a str, u64) {
    let plan = plans
        .iter()
        .find(|p| p.contains(marker))
        .unwrap_or_else(|| panic!("no statement with {marker:?} in {plans:#?}"));
    let line = plan
        .lines()
        .find(|l| l.contains(&format!("Index Scan Backward using {index}")))
        .unwrap_or_else(|| panic!("not an ordered scan of {index}: {plan}"));
    let rows = line
        .split("actual rows=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no actual rows in {line}"));
    (plan, rows.parse().unwrap())
}

#[tokio::test]
async fn a_page_is_one_short_index_range_scan_however_deep() {
    let (db, client, _) = setup("coord_admin_explain", 0, &[]).await;
    let specs: Vec<Value> = (0..20_000)
        .map(|_| spec("t", json!({}), json!({})))
        .collect();
    let ids = submit_n(&client, "c", Value::Array(specs)).await;
    // A quarter of them finished, with distinct end times.
    client
        .batch_execute(
            "UPDATE colony_assign.processes SET state = 2, assigned_executor = 'e', started_at = submitted_at,
                    ended_at = submitted_at + id * interval '1 ms'
             WHERE colony = 'c' AND id % 4 = 0;
             ANALYZE colony_assign.processes;",
        )
        .await
        .unwrap();
    // Another colony's processes between them: the primary key has no colony.
    client
        .execute("SELECT colony_assign.add_colony('d')", &[])
        .await
        .unwrap();
    let specs: Vec<Value> = (0..2_000)
        .map(|_| spec("t", json!({}), json!({})))
        .collect();
    submit_n(&client, "d", Value::Array(specs)).await;
    client
        .batch_execute("ANALYZE colony_assign.processes")
        .await
        .unwrap();
    // The cursor of the row `offset` rows from the oldest end of a listing's order.
    let cursor_at = |order: &str, offset: i64| {
        let (column, only) = if order == "submitted" {
            ("id", "true")
        } else {
            ("ended_at", "state >= 2")
        };
        format!(
            "(SELECT colony_assign._process_cursor('{order}', ended_at, id) FROM colony_assign.processes
              WHERE colony = 'c' AND {only} ORDER BY {column}, id OFFSET {offset} LIMIT 1)"
        )
    };
    assert_eq!(ids.len(), 20_000);
    for (order, marker, index, cond, rows_in_order) in [
        (
            "submitted",
            "cursor_id - budget",
            "processes_pkey",
            "Index Cond: ((id < ",
            20_000,
        ),
        (
            "ended",
            "ORDER BY p.ended_at DESC, p.id DESC LIMIT $6",
            "processes_finished_idx",
            "Index Cond: ((colony = 'c'::text) AND (ended_at <= ",
            5_000,
        ),
    ] {
        let mut rows = Vec::new();
        for after in [
            "NULL".to_owned(),
            cursor_at(order, rows_in_order / 2),
            cursor_at(order, 150),
        ] {
            let plans = plans_of(
                &db,
                &format!(
                    "SELECT * FROM colony_assign.list_processes('c', order_by => '{order}', after => {after}, max_count => 100)"
                ),
            )
            .await;
            let (plan, read) = scan_of(&plans, marker, index);
            // The scan starts where the page starts: the cursor bounds the index range.
            assert!(plan.contains(cond), "{plan}");
            rows.push(read);
        }
        // The same short scan at the top, in the middle and near the end: a page reads about
        // a page of rows, not the thousands before it. (A little more than 100 in end order:
        // the loop fetches 10 rows at a time, and an incremental sort reads ahead by groups.)
        assert!(
            rows.iter().all(|&r| (100..=200).contains(&r)),
            "{order}: {rows:?}"
        );
    }
}

#[tokio::test]
async fn scoped_admins_see_and_change_only_their_colonies() {
    let (_db, client, coordinators) = setup("coord_admin_scope", 1, &[]).await;
    let coordinator = &coordinators[0];
    client
        .batch_execute("SELECT colony_assign.add_colony('d'), colony_assign.add_colony('e')")
        .await
        .unwrap();
    let ops = add_admin(&client, "ops", Some(&["c", "e"])).await;
    let d_process = submit_n(&client, "d", json!([spec("t", json!({}), json!({}))])).await[0];
    let c_process = submit_n(&client, "c", json!([spec("t", json!({}), json!({}))])).await[0];
    add_executor(&client, "d", "x", "t", None).await;

    let admin = client_of(coordinator, &ops);
    let names: Vec<String> = admin
        .colonies(None, None)
        .await
        .unwrap()
        .colonies
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c", "e"]);
    assert_eq!(admin.process(c_process).await.unwrap().id, c_process);

    let before = fingerprint(&client).await;
    let o = Some(ops.as_str());
    let d_get = format!("/v1/processes/{d_process}");
    let d_cancel = format!("/v1/processes/{d_process}/cancel");
    for (method, path, body, status) in [
        (Method::GET, "/v1/colonies/d/executors", None, 404),
        (Method::GET, "/v1/colonies/d/processes", None, 404),
        (Method::GET, "/v1/colonies/d/queues", None, 404),
        (Method::GET, "/v1/colonies/d/stats", None, 404),
        (Method::POST, "/v1/colonies/d/pause", None, 404),
        (Method::POST, "/v1/colonies/d/resume", None, 404),
        (
            Method::PUT,
            "/v1/colonies/d/strict",
            Some(r#"{"strict": true}"#),
            404,
        ),
        (Method::DELETE, "/v1/colonies/d", None, 404),
        (Method::DELETE, "/v1/colonies/d/executors/x", None, 404),
        (
            Method::POST,
            "/v1/colonies/d/executors",
            Some(r#"{"name": "y", "executortype": "t"}"#),
            404,
        ),
        (
            Method::POST,
            "/v1/colonies/d/processes",
            Some(r#"{"funcname": "f", "conditions": {"executortype": "t"}}"#),
            404,
        ),
        (Method::GET, d_get.as_str(), None, 404),
        (Method::POST, d_cancel.as_str(), None, 404),
        // Adding colonies: only those the token names.
        (Method::POST, "/v1/colonies", Some(r#"{"name": "f"}"#), 403),
        (Method::POST, "/v1/colonies", Some(r#"{"name": "c"}"#), 409),
    ] {
        let (got, body) = call(coordinator, method.clone(), path, o, body).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    assert_eq!(fingerprint(&client).await, before);
    // What it reaches, it changes.
    admin.pause("e").await.unwrap();
    admin.remove_colony("e").await.unwrap();
    admin.add_colony("e").await.unwrap();
}

#[tokio::test]
async fn a_removed_admin_is_refused_on_every_replica_and_the_database_has_the_last_word() {
    // A day-long cache TTL: only the control channel can explain a prompt refusal.
    let (_db, client, coordinators) =
        setup("coord_admin_revoke", 2, &["--token-cache-s", "86400"]).await;
    let root = add_admin(&client, "root", None).await;
    for coordinator in &coordinators {
        let (status, _) = call(coordinator, Method::GET, "/v1/colonies", Some(&root), None).await;
        assert_eq!(status, 200);
    }
    client
        .execute("SELECT colony_assign.remove_admin('root')", &[])
        .await
        .unwrap();
    for coordinator in &coordinators {
        eventually("the removed admin's token is refused", || async {
            call(coordinator, Method::GET, "/v1/colonies", Some(&root), None)
                .await
                .0
                == 401
        })
        .await;
    }

    // A token deleted behind the coordinators' backs (no notification): reads trust the
    // cache until its TTL, but a change asks the database, which refuses it.
    let ops = add_admin(&client, "ops", None).await;
    let coordinator = &coordinators[0];
    let (status, _) = call(coordinator, Method::GET, "/v1/colonies", Some(&ops), None).await;
    assert_eq!(status, 200);
    client
        .execute("DELETE FROM colony_assign.admins WHERE name = 'ops'", &[])
        .await
        .unwrap();
    let before = fingerprint(&client).await;
    let (status, body) = call(
        coordinator,
        Method::POST,
        "/v1/colonies/c/pause",
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["sqlstate"].as_str()),
        (401, Some("28000")),
        "{body}"
    );
    let (status, _) = call(
        coordinator,
        Method::POST,
        "/v1/colonies",
        Some(&ops),
        Some(r#"{"name": "z"}"#),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(fingerprint(&client).await, before);
}

/// (method, path, token, body, expected status)
type Case<'a> = (Method, String, Option<&'a str>, Option<String>, u16);

#[tokio::test]
async fn bad_admin_input_gets_a_json_4xx_and_changes_nothing() {
    let (_db, client, coordinators) =
        setup("coord_admin_errors", 1, &["--max-body-bytes", "2000"]).await;
    let coordinator = &coordinators[0];
    let root = add_admin(&client, "root", None).await;
    let executor = add_executor(&client, "c", "e", "t", None).await;
    let done = submit_n(&client, "c", json!([spec("t", json!({}), json!({}))])).await[0];
    client
        .execute("SELECT colony_assign.cancel($1)", &[&done])
        .await
        .unwrap();
    let long = "x".repeat(256);
    let big = format!(r#"{{"name": "{}"}}"#, "y".repeat(3000));
    let (r, e) = (Some(root.as_str()), Some(executor.as_str()));
    let cases: Vec<Case> = vec![
        // Malformed or unexpected bodies.
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some("{\"name\": ".into()),
            400,
        ),
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some("[\"c\"]".into()),
            400,
        ),
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some(r#"{"name": "z", "strict": true}"#.into()),
            400,
        ),
        (Method::POST, "/v1/colonies".into(), r, None, 400),
        (
            Method::POST,
            "/v1/colonies/c/executors".into(),
            r,
            Some(r#"{"name": "z"}"#.into()),
            400,
        ),
        (
            Method::PUT,
            "/v1/colonies/c/strict".into(),
            r,
            Some(r#"{"strict": 1}"#.into()),
            400,
        ),
        // Names the database refuses: empty, over 255 bytes, a NUL.
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some(r#"{"name": ""}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some(format!(r#"{{"name": "{long}"}}"#)),
            400,
        ),
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some(r#"{"name": "a\u0000b"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/v1/colonies/c/executors".into(),
            r,
            Some(format!(r#"{{"name": "z", "executortype": "{long}"}}"#)),
            400,
        ),
        (Method::POST, "/v1/colonies/%00/pause".into(), r, None, 400),
        (Method::DELETE, format!("/v1/colonies/{long}"), r, None, 400),
        // Too large.
        (Method::POST, "/v1/colonies".into(), r, Some(big), 413),
        // Bad query parameters and cursors.
        (
            Method::GET,
            "/v1/colonies/c/processes?limit=0".into(),
            r,
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/colonies/c/processes?state=asleep".into(),
            r,
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/colonies/c/processes?after=s:x".into(),
            r,
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/colonies/c/processes?after=s:9999999999999999999".into(),
            r,
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/colonies/c/processes?since=yesterday-ish".into(),
            r,
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/colonies/c/processes?order=ended&state=waiting".into(),
            r,
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/colonies/c/executors?limit=5000".into(),
            r,
            None,
            400,
        ),
        // Unknown things.
        (
            Method::GET,
            "/v1/colonies/nope/processes".into(),
            r,
            None,
            404,
        ),
        (
            Method::GET,
            "/v1/colonies/nope/executors".into(),
            r,
            None,
            404,
        ),
        (Method::GET, "/v1/colonies/nope/queues".into(), r, None, 404),
        (Method::POST, "/v1/colonies/nope/pause".into(), r, None, 404),
        (Method::DELETE, "/v1/colonies/nope".into(), r, None, 404),
        (
            Method::DELETE,
            "/v1/colonies/c/executors/nope".into(),
            r,
            None,
            404,
        ),
        (
            Method::POST,
            "/v1/processes/987654321/cancel".into(),
            r,
            None,
            404,
        ),
        // Wrong state or duplicates.
        (
            Method::POST,
            format!("/v1/processes/{done}/cancel"),
            r,
            None,
            409,
        ),
        (
            Method::POST,
            "/v1/colonies".into(),
            r,
            Some(r#"{"name": "c"}"#.into()),
            409,
        ),
        (
            Method::POST,
            "/v1/colonies/c/executors".into(),
            r,
            Some(r#"{"name": "e", "executortype": "t"}"#.into()),
            409,
        ),
        // Wrong kind of token, or none.
        (Method::GET, "/v1/colonies".into(), e, None, 403),
        (Method::POST, "/v1/colonies/c/pause".into(), e, None, 403),
        (
            Method::DELETE,
            "/v1/colonies/c/executors/e".into(),
            e,
            None,
            403,
        ),
        (
            Method::POST,
            "/v1/colonies/c/assign?timeout=0".into(),
            r,
            None,
            403,
        ),
        (Method::GET, "/v1/colonies".into(), None, None, 401),
        (
            Method::GET,
            "/v1/colonies".into(),
            Some("caa_not_a_token"),
            None,
            401,
        ),
        // No such route or method.
        (Method::GET, "/v1/admins".into(), r, None, 404),
        (Method::PATCH, "/v1/colonies/c".into(), r, None, 405),
    ];
    for (method, path, token, body, status) in cases {
        let before = fingerprint(&client).await;
        let (got, answer) = call(coordinator, method.clone(), &path, token, body.as_deref()).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        let code = answer["error"]["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && answer["error"]["message"].is_string(),
            "{method} {path}: JSON error body, got {answer}"
        );
        assert_eq!(
            fingerprint(&client).await,
            before,
            "{method} {path} changed the tables"
        );
    }
    // The admin token still works: nothing above broke it.
    let (status, body) = call(coordinator, Method::GET, "/v1/colonies", Some(&root), None).await;
    assert_eq!(status, 200);
    let names: BTreeSet<&str> = body["colonies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["c"]));
}
