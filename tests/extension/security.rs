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
    let token = add_executor(&client, "e", "t", None).await;

    // Roles grant what a session may call; a login says as whom (security.rs, below).
    let submitter = db.client_as(&submitter_role).await;
    login(&submitter, &token).await;
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
    login(&executor, &token).await;
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

async fn login(client: &tokio_postgres::Client, token: &str) {
    client
        .query_one("SELECT * FROM colony_assign.login($1)", &[&token])
        .await
        .expect("login");
}

/// SQL-direct sessions act only as what they logged in as (DESIGN.md, Security): every
/// executor entry point refuses another executor, another colony, an admin and no login (42501,
/// nothing changes); readers see another colony's objects exactly as if they did not exist
/// (P0002); a removed executor's token (re-added under the same name) no longer works; logout
/// ends it all.
#[tokio::test]
async fn sessions_act_only_as_what_they_logged_in_as() {
    let (db, client) = setup("security_login").await;
    let role = format!("tenant_{}", db.name);
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS \"{role}\";
             CREATE ROLE \"{role}\" LOGIN IN ROLE colony_assign_executor, colony_assign_submitter;
             SELECT colony_assign.add_colony('d');"
        ))
        .await
        .unwrap();
    let e = add_executor(&client, "e", "t", None).await;
    let f = add_executor(&client, "f", "t", None).await;
    let x: String = client
        .query_one("SELECT colony_assign.add_executor('d', 'x', 't')", &[])
        .await
        .unwrap()
        .get(0);
    let admin_d: String = client
        .query_one("SELECT colony_assign.add_admin('ops', ARRAY['d'])", &[])
        .await
        .unwrap()
        .get(0);
    let workflow: i64 = client
        .query_one(
            "SELECT colony_assign.submit_workflow('c', $1)",
            &[&json!([{"funcname": "f", "nodename": "a", "conditions": {"executortype": "t"}}])],
        )
        .await
        .unwrap()
        .get(0);
    let running: i64 = client
        .query_one("SELECT id FROM colony_assign.assign('c', 'e')", &[])
        .await
        .unwrap()
        .get(0);
    let waiting = submit(&client, &spec("t", json!({}), json!({}))).await;

    let session = async |token: Option<&str>| {
        let s = db.client_as(&role).await;
        if let Some(t) = token {
            login(&s, t).await;
        }
        s
    };
    let as_e = session(Some(&e)).await;
    let as_f = session(Some(&f)).await;
    let as_x = session(Some(&x)).await;
    let as_admin = session(Some(&admin_d)).await;
    let nobody = session(None).await;
    assert_eq!(
        sqlstate(
            nobody
                .query("SELECT * FROM colony_assign.login('cat_nope')", &[])
                .await
        ),
        "28000"
    );

    // Executor entry points, as e, from sessions that are not e.
    let acting_as_e = [
        "SELECT * FROM colony_assign.assign('c', 'e')".to_owned(),
        format!("SELECT colony_assign.close({running}, 'e')"),
        format!("SELECT colony_assign.fail({running}, 'e', '{{no}}')"),
        format!("SELECT * FROM colony_assign.close_many('e', '[{{\"id\": {running}}}]')"),
        "SELECT colony_assign.heartbeat('c', 'e')".to_owned(),
        format!("SELECT colony_assign.heartbeat('c', 'e', ARRAY[{running}::int8])"),
        format!("SELECT colony_assign.log({running}, 'e', 'hi')"),
        "SELECT * FROM colony_assign.running('c', 'e')".to_owned(),
    ];
    for (who, s) in [
        ("f", &as_f),
        ("x of d", &as_x),
        ("admin of d", &as_admin),
        ("nobody", &nobody),
    ] {
        for call in &acting_as_e {
            let before = e2e::fingerprint(&client).await;
            assert_eq!(sqlstate(s.query(call, &[]).await), "42501", "{who}: {call}");
            assert_eq!(
                e2e::fingerprint(&client).await,
                before,
                "{who}: {call} changed nothing"
            );
        }
    }
    // Readers and submitters of colony c, from colony d: as if nothing were there.
    let readers = [
        format!("SELECT colony_assign.process({waiting})"),
        format!("SELECT * FROM colony_assign.logs({running})"),
        format!("SELECT colony_assign.workflow({workflow})"),
        format!("SELECT colony_assign.cancel({waiting})"),
        "SELECT * FROM colony_assign.stats('c')".to_owned(),
        "SELECT colony_assign.submit('c', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"t\"}}')".to_owned(),
        "SELECT * FROM colony_assign.channels('c', 'e')".to_owned(),
    ];
    for (who, s) in [("x of d", &as_x), ("admin of d", &as_admin)] {
        for call in &readers {
            let before = e2e::fingerprint(&client).await;
            assert_eq!(sqlstate(s.query(call, &[]).await), "P0002", "{who}: {call}");
            assert_eq!(
                e2e::fingerprint(&client).await,
                before,
                "{who}: {call} changed nothing"
            );
        }
    }
    for call in &readers {
        assert_eq!(
            sqlstate(nobody.query(call, &[]).await),
            "42501",
            "nobody: {call}"
        );
    }
    // And what they may do: e works as e; f reads its colony; the admin of d submits into d.
    let held: Vec<i64> = as_e
        .query("SELECT id FROM colony_assign.running('c', 'e')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, [running]);
    as_e.query_one(&format!("SELECT colony_assign.process({waiting})"), &[])
        .await
        .unwrap();
    as_f.query_one("SELECT * FROM colony_assign.stats('c')", &[])
        .await
        .unwrap();
    as_e.execute(
        &format!("SELECT colony_assign.log({running}, 'e', 'progress')"),
        &[],
    )
    .await
    .unwrap();
    as_e.execute(&format!("SELECT colony_assign.close({running}, 'e')"), &[])
        .await
        .unwrap();
    as_admin
        .query_one(
            "SELECT colony_assign.submit('d', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"t\"}}')",
            &[],
        )
        .await
        .unwrap();

    // e removed and re-added with a new token: the old login no longer acts as e.
    client
        .batch_execute("SELECT colony_assign.remove_executor('c', 'e')")
        .await
        .unwrap();
    add_executor(&client, "e", "t", None).await;
    assert_eq!(
        sqlstate(
            as_e.query("SELECT * FROM colony_assign.assign('c', 'e')", &[])
                .await
        ),
        "42501"
    );
    // Logout: f acts as nobody.
    as_f.execute("SELECT colony_assign.logout()", &[])
        .await
        .unwrap();
    assert_eq!(
        sqlstate(
            as_f.query("SELECT * FROM colony_assign.assign('c', 'f')", &[])
                .await
        ),
        "42501"
    );
}
