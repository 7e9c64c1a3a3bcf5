//! Privileges and search_path safety.

use super::{add_executor, setup, submit};
use e2e::{spec, sqlstate};
use serde_json::json;

/// A caller's search_path cannot redirect the extension's functions: shadowing tables and
/// functions in `public` (searched first here) are never used.
#[tokio::test]
async fn functions_ignore_a_hostile_search_path() {
    let (_db, client) = setup("security_search_path").await;
    client
        .batch_execute(
            "CREATE TABLE public.processes (LIKE colony_assign.processes);
             CREATE TABLE public.executors (LIKE colony_assign.executors);
             CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE sql
                 AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
             CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$;
             CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
                 AS $$ SELECT '2000-01-01'::timestamptz $$;
             CREATE FUNCTION public.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'object' $$;
             SET search_path = public, colony_assign, pg_catalog;",
        )
        .await
        .unwrap();
    let t1 = add_executor(&client, "e1", "t", None).await;
    let t2 = add_executor(&client, "e2", "t", None).await;
    assert_ne!(t1, t2, "tokens come from the real gen_random_uuid()");
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM colony_assign.executors
             WHERE token_hash = pg_catalog.sha256(pg_catalog.convert_to($1, 'UTF8'))
                OR token_hash = pg_catalog.sha256(pg_catalog.convert_to($2, 'UTF8'))",
            &[&t1, &t2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2, "hashes made with pg_catalog.sha256");
    // The shadowing jsonb_typeof would accept this; the real one does not.
    let refused = client
        .query("SELECT colony_assign.submit('c', '[1]')", &[])
        .await;
    assert_eq!(sqlstate(refused), "22023");
    let id = submit(&client, &spec("t", json!({}), json!({}))).await;
    let row = client
        .query_one(
            "SELECT id, started_at > '2001-01-01' FROM colony_assign.assign('c', 'e1')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), id);
    assert!(row.get::<_, bool>(1), "timestamps from the real clock");
    let shadow: i64 = client
        .query_one("SELECT (SELECT count(*) FROM public.processes) + (SELECT count(*) FROM public.executors)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shadow, 0, "the shadow tables were never touched");
}

#[tokio::test]
async fn roles_separate_executors_submitters_and_admins() {
    let (db, client) = setup("security_roles").await;
    let executor_role = format!("exec_{}", db.name);
    let submitter_role = format!("sub_{}", db.name);
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS \"{executor_role}\"; DROP ROLE IF EXISTS \"{submitter_role}\";
             CREATE ROLE \"{executor_role}\" LOGIN IN ROLE colony_assign_executor;
             CREATE ROLE \"{submitter_role}\" LOGIN IN ROLE colony_assign_submitter;"
        ))
        .await
        .unwrap();
    add_executor(&client, "e", "t", None).await;

    let submitter = db.client_as(&submitter_role).await;
    let id: i64 = submitter
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sqlstate(
            submitter
                .query("SELECT * FROM colony_assign.assign('c', 'e')", &[])
                .await
        ),
        "42501"
    );

    let executor = db.client_as(&executor_role).await;
    let got: i64 = executor
        .query_one("SELECT id FROM colony_assign.assign('c', 'e')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, id);
    executor
        .execute(
            "SELECT colony_assign.close($1, 'e', '{\"ok\": true}')",
            &[&id],
        )
        .await
        .unwrap();
    for forbidden in [
        "SELECT * FROM colony_assign.processes",
        "SELECT * FROM colony_assign.executors",
        "UPDATE colony_assign.processes SET state = 0",
        "INSERT INTO colony_assign.colonies (name) VALUES ('x')",
        "SELECT colony_assign.add_colony('x')",
        "SELECT colony_assign.submit('c', '{}')",
        "SELECT colony_assign.reap()",
        "SELECT colony_assign._wake('c', 't', NULL, NULL, 1)",
    ] {
        assert_eq!(
            sqlstate(executor.query(forbidden, &[]).await),
            "42501",
            "{forbidden}"
        );
    }
}
