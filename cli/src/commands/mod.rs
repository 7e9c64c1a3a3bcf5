//! One module per command group; [`run`] sends the parsed command to its module.

pub mod colonies;
pub mod control;
pub mod executors;
pub mod process;
pub mod ps;
pub mod submit;
pub mod worker;
pub mod workflow;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::error::Result;
use std::future::Future;

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::new(cli.global);
    match cli.command {
        Command::Submit(args) => submit::run(&ctx, args).await,
        Command::Ps(args) => ps::run(&ctx, args).await,
        Command::Get(args) => process::get(&ctx, args).await,
        Command::Logs(args) => process::logs(&ctx, args).await,
        Command::Cancel(args) => process::cancel(&ctx, args).await,
        Command::Colonies(command) => colonies::run(&ctx, command).await,
        Command::Executors(command) => executors::run(&ctx, command).await,
        Command::Pause => control::pause(&ctx).await,
        Command::Resume => control::resume(&ctx).await,
        Command::Stats => control::stats(&ctx).await,
        Command::Workflow(command) => workflow::run(&ctx, command).await,
        Command::Worker(args) => worker::run(&ctx, args).await,
    }
}

/// Up to `limit` items of a keyset-paged listing, from cursor `after` on: `page(after, left)`
/// fetches the page after `after` (at most `left` items are still wanted) and gives its items
/// and the cursor after them (None at the end). Returns the items and, when more may follow,
/// the cursor after the last one.
pub async fn pages<T, F, Fut>(
    limit: usize,
    mut after: Option<String>,
    mut page: F,
) -> Result<(Vec<T>, Option<String>)>
where
    F: FnMut(Option<String>, usize) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut out = Vec::new();
    loop {
        let (items, next) = page(after, limit - out.len()).await?;
        out.extend(items);
        match next {
            Some(next) if out.len() < limit => after = Some(next),
            next => return Ok((out, next)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of 0..n, `size` per page, the cursor the last item's number.
    async fn listing(n: u32, size: usize, limit: usize) -> (Vec<u32>, Option<String>, usize) {
        let mut calls = 0;
        let (items, next) = pages(limit, None, |after, left| {
            calls += 1;
            let from = after.map_or(0, |a| a.parse::<u32>().unwrap() + 1);
            let items: Vec<u32> = (from..n).take(size.min(left)).collect();
            let next = items.last().filter(|&&l| l + 1 < n).map(u32::to_string);
            async move { Ok((items, next)) }
        })
        .await
        .unwrap();
        (items, next, calls)
    }

    #[tokio::test]
    async fn pages_are_followed_up_to_the_limit() {
        assert_eq!(
            listing(5, 2, usize::MAX).await,
            (vec![0, 1, 2, 3, 4], None, 3)
        );
        assert_eq!(listing(5, 2, 3).await, (vec![0, 1, 2], Some("2".into()), 2));
        assert_eq!(listing(4, 2, 4).await, (vec![0, 1, 2, 3], None, 2));
        assert_eq!(listing(0, 2, 10).await, (vec![], None, 1));
    }
}
