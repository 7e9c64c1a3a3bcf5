//! Natural batching of database calls: requests that arrive while earlier calls are in flight
//! wait, and the next call takes all of them at once.
//!
//! At low load a request goes out at once in a batch of one (nothing waits for a timer); under
//! load, batches grow by themselves to what arrived during one call, so a replica serving 50
//! executors makes a few calls (and commits) where it made 50. In strict colonies a batch also
//! holds the (colony, type) lock once for all its claims (the extension's `assign_batch`).
//!
//! A reply nobody waits for any more (the long-poll's client left while its batch ran) goes
//! to `undelivered`, so a claimed process is never stranded.

use crate::error::{Error, Result};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T>>;

/// A queue in front of one kind of batched call.
pub struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<(Req, Reply<Resp>)>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<Req, Resp> Batcher<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    /// Starts the batching task: at most `in_flight` calls at once, at most `max_batch`
    /// requests per call. `call` answers a batch with one result per request, in order (or
    /// fails as a whole); `undelivered` receives what a request that was given up produced.
    pub fn start<C, F, U>(in_flight: usize, max_batch: usize, call: C, undelivered: U) -> Self
    where
        C: Fn(Vec<Req>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Vec<Result<Resp>>>> + Send + 'static,
        U: Fn(Req, Resp) + Send + Sync + 'static,
    {
        let (queue, mut requests) = mpsc::unbounded_channel::<(Req, Reply<Resp>)>();
        let permits = Arc::new(Semaphore::new(in_flight.max(1)));
        let call = Arc::new(call);
        let undelivered = Arc::new(undelivered);
        tokio::spawn(async move {
            loop {
                // A free slot first, then whatever is queued: requests that arrive while every
                // slot is busy pile up and leave together.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = requests.recv().await else {
                    return; // every sender is gone: the coordinator is stopping
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match requests.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (call, undelivered) = (call.clone(), undelivered.clone());
                tokio::spawn(async move {
                    let (reqs, replies): (Vec<Req>, Vec<Reply<Resp>>) = batch.into_iter().unzip();
                    match call(reqs.clone()).await {
                        Ok(results) => {
                            for ((req, reply), result) in reqs.into_iter().zip(replies).zip(results)
                            {
                                if let Err(Ok(resp)) = reply.send(result) {
                                    undelivered(req, resp);
                                }
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Batcher { queue }
    }

    /// Queues `req` and waits for its result.
    pub async fn call(&self, req: Req) -> Result<Resp> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((req, reply))
            .map_err(|_| Error::ShuttingDown)?;
        answer.await.unwrap_or(Err(Error::ShuttingDown))
    }
}
