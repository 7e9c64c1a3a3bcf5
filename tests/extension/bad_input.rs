//! Bad input gets a clear error with a documented SQLSTATE and changes nothing.

use super::{add_executor, assign, setup, submit};
use e2e::{fingerprint, spec, sqlstate};
use serde_json::{Value, json};

/// Runs `sql` with `params`, expects `code`, and checks the tables did not change.
async fn rejects(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    code: &str,
) {
    let before = fingerprint(client).await;
    let result = client.query(sql, params).await;
    let message = result.as_ref().err().map(|e| {
        e.as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string())
    });
    assert_eq!(sqlstate(result), code, "{sql} {params:?}: {message:?}");
    assert!(!message.unwrap_or_default().is_empty());
    assert_eq!(
        fingerprint(client).await,
        before,
        "{sql} {params:?} changed the tables"
    );
}

fn base() -> Value {
    spec("t", json!({}), json!({}))
}

fn with(path: &[&str], value: Value) -> Value {
    let mut s = base();
    let mut target = &mut s;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    target[path[path.len() - 1]] = value;
    s
}

#[tokio::test]
async fn malformed_specs_are_rejected_with_22023() {
    let (_db, client) = setup("bad_specs").await;
    submit(&client, &base()).await; // something in the tables, so "unchanged" means something
    let long = "x".repeat(10_000);
    let invalid = [
        json!([1, 2]),
        json!("a string"),
        json!(null),
        json!({}),
        json!({"funcname": "f"}),
        with(&["bogus"], json!(1)),
        with(&["fs"], json!({})), // a ColonyOS key we do not support: rejected, not ignored
        with(&["conditions", "cpu"], json!("1000m")),
        with(&["funcname"], json!("")),
        with(&["funcname"], json!(42)),
        with(&["funcname"], json!(long)),
        with(&["args"], json!({"not": "an array"})),
        with(&["kwargs"], json!([1])),
        with(&["priority"], json!("high")),
        with(&["priority"], json!(1.5)),
        with(&["priority"], json!(50001)),
        with(&["priority"], json!(-1e9)),
        with(&["priority"], json!(1e300)),
        with(&["maxexectime"], json!(-5)),
        with(&["maxwaittime"], json!(1e12)),
        with(&["maxretries"], json!(-2)),
        with(&["maxretries"], json!(true)),
        with(&["label"], json!(["x"])),
        with(&["conditions"], json!("t")),
        with(&["conditions", "executortype"], json!("")),
        with(&["conditions", "executortype"], json!(null)),
        with(&["conditions", "executortype"], json!(long)),
        with(&["conditions", "executornames"], json!("e1")),
        with(&["conditions", "executornames"], json!([""])),
        with(&["conditions", "executornames"], json!([null])),
        with(&["conditions", "executornames"], json!(["ok", long])),
        with(&["conditions", "locationname"], json!(7)),
        with(&["conditions", "dependencies"], json!(["a"])), // only in workflows
        with(&["conditions", "localitywait"], json!(-1)),
        with(&["conditions", "colonyname"], json!("another colony")),
    ];
    for spec in &invalid {
        rejects(
            &client,
            "SELECT colony_assign.submit('c', $1)",
            &[spec],
            "22023",
        )
        .await;
    }
    // In a batch the message names the index, and nothing of the batch is inserted.
    let batch = Value::Array(vec![base(), base(), with(&["priority"], json!("x"))]);
    let err = client
        .query("SELECT colony_assign.submit_many('c', $1)", &[&batch])
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .starts_with("spec[2]: spec.priority"),
        "{err}"
    );
    rejects(
        &client,
        "SELECT colony_assign.submit_many('c', $1)",
        &[&batch],
        "22023",
    )
    .await;
    rejects(
        &client,
        "SELECT colony_assign.submit_many('c', $1)",
        &[&json!({"not": "an array"})],
        "22023",
    )
    .await;
    // Not JSON at all is refused by PostgreSQL's own jsonb parser before our code runs.
    rejects(
        &client,
        "SELECT colony_assign.submit('c', '{\"funcname\": ')",
        &[],
        "22P02",
    )
    .await;
}

#[tokio::test]
async fn oversized_input_is_rejected_with_54000() {
    let (_db, client) = setup("bad_sizes").await;
    add_executor(&client, "e", "t", None).await;
    // Random-looking text so TOAST compression cannot shrink it under the limit.
    let noise: String = (0..400_000u64)
        .map(|i| char::from(b'a' + ((i * 7919 + i / 13) % 26) as u8))
        .collect();
    let big = with(&["args"], json!([noise]));
    rejects(
        &client,
        "SELECT colony_assign.submit('c', $1)",
        &[&big],
        "54000",
    )
    .await;
    let id = submit(&client, &base()).await;
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    rejects(
        &client,
        "SELECT colony_assign.close($1, 'e', $2)",
        &[&id, &json!({"out": noise})],
        "54000",
    )
    .await;
    let huge: Vec<Value> = (0..100_001).map(|_| json!(1)).collect();
    rejects(
        &client,
        "SELECT colony_assign.submit_many('c', $1)",
        &[&Value::Array(huge)],
        "54000",
    )
    .await;
}

#[tokio::test]
async fn unknown_names_hostile_names_and_wrong_state() {
    let (_db, client) = setup("bad_names").await;
    add_executor(&client, "e", "t", None).await;
    add_executor(&client, "other", "t", None).await;
    let id = submit(&client, &base()).await;

    rejects(
        &client,
        "SELECT colony_assign.submit('nope', $1)",
        &[&base()],
        "P0002",
    )
    .await;
    rejects(
        &client,
        "SELECT * FROM colony_assign.assign('c', 'nobody')",
        &[],
        "P0002",
    )
    .await;
    rejects(
        &client,
        "SELECT * FROM colony_assign.assign('nope', 'e')",
        &[],
        "P0002",
    )
    .await;
    rejects(
        &client,
        "SELECT * FROM colony_assign.assign('c', 'e', 0)",
        &[],
        "22023",
    )
    .await;
    rejects(
        &client,
        "SELECT * FROM colony_assign.assign('c', 'e', 5000)",
        &[],
        "22023",
    )
    .await;
    rejects(
        &client,
        "SELECT * FROM colony_assign.process(-1)",
        &[],
        "P0002",
    )
    .await;
    rejects(&client, "SELECT colony_assign.cancel(123456)", &[], "P0002").await;
    rejects(
        &client,
        "SELECT colony_assign.add_colony('c')",
        &[],
        "23505",
    )
    .await;
    rejects(
        &client,
        "SELECT colony_assign.add_executor('c', 'e', 't')",
        &[],
        "23505",
    )
    .await;
    rejects(
        &client,
        "SELECT colony_assign.add_colony(NULL)",
        &[],
        "22004",
    )
    .await;
    rejects(&client, "SELECT colony_assign.add_colony('')", &[], "22023").await;
    rejects(
        &client,
        "SELECT colony_assign.add_colony($1)",
        &[&"q".repeat(10_000)],
        "22023",
    )
    .await;
    rejects(&client, "SELECT colony_assign.stats('nope')", &[], "P0002").await;
    rejects(
        &client,
        "SELECT colony_assign.remove_executor('c', 'nobody')",
        &[],
        "P0002",
    )
    .await;
    rejects(
        &client,
        "SELECT colony_assign.set_strict('c', NULL)",
        &[],
        "22004",
    )
    .await;

    // Wrong executor, closing twice, closing what is not running.
    rejects(
        &client,
        "SELECT colony_assign.close($1, 'e', '{}')",
        &[&id],
        "55000",
    )
    .await;
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    rejects(
        &client,
        "SELECT colony_assign.close($1, 'other', '{}')",
        &[&id],
        "42501",
    )
    .await;
    rejects(
        &client,
        "SELECT colony_assign.fail($1, 'other', '{oops}')",
        &[&id],
        "42501",
    )
    .await;
    client
        .execute("SELECT colony_assign.close($1, 'e', '{}')", &[&id])
        .await
        .unwrap();
    rejects(
        &client,
        "SELECT colony_assign.close($1, 'e', '{}')",
        &[&id],
        "55000",
    )
    .await;
    rejects(
        &client,
        "SELECT colony_assign.fail($1, 'e', '{late}')",
        &[&id],
        "55000",
    )
    .await;
    rejects(&client, "SELECT colony_assign.cancel($1)", &[&id], "55000").await;
    rejects(
        &client,
        "SELECT colony_assign.close(-7, 'e', '{}')",
        &[],
        "P0002",
    )
    .await;

    // Quotes, unicode and SQL-looking names are plain data.
    let hostile = "'; DROP TABLE colony_assign.processes; -- \"ü☃\"";
    client
        .execute("SELECT colony_assign.add_colony($1)", &[&hostile])
        .await
        .unwrap();
    client
        .execute(
            "SELECT colony_assign.add_executor($1, $1, $1, $1)",
            &[&hostile],
        )
        .await
        .unwrap();
    let hostile_spec = spec(
        hostile,
        json!({"locationname": hostile, "colonyname": hostile}),
        json!({}),
    );
    let id: i64 = client
        .query_one(
            "SELECT colony_assign.submit($1, $2)",
            &[&hostile, &hostile_spec],
        )
        .await
        .unwrap()
        .get(0);
    let got: i64 = client
        .query_one("SELECT id FROM colony_assign.assign($1, $1)", &[&hostile])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, id);
}
