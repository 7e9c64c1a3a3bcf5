//! Graceful shutdown answers every parked long-poll.

use super::{add_executor, setup};
use e2e::{HttpExecutor, eventually};
use std::time::Duration;

#[tokio::test]
async fn sigterm_answers_1000_parked_long_polls_and_exits_within_2_seconds() {
    let (_db, client, mut coordinators) = setup("coord_shutdown", 1, &[]).await;
    let mut polls = Vec::new();
    for e in 0..10 {
        let token = add_executor(&client, "c", &format!("e{e}"), "t", None).await;
        for _ in 0..100 {
            let executor = HttpExecutor::new(&coordinators[0], &token);
            polls.push(tokio::spawn(async move {
                executor
                    .http
                    .post(format!("{}/v1/colonies/c/assign?timeout=60", executor.base))
                    .bearer_auth(&executor.token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
    }
    let coordinator = &coordinators[0];
    eventually("1000 long-polls parked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "name")])
            .await
            == 1000.0
    })
    .await;
    let took = coordinators[0].terminate().await;
    let mut no_content = 0;
    for poll in polls {
        if matches!(poll.await.unwrap(), Ok(204)) {
            no_content += 1;
        }
    }
    assert_eq!(no_content, 1000, "every parked long-poll answered 204");
    // The contract is "promptly": the process must be gone within 2 s of SIGTERM.
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}
