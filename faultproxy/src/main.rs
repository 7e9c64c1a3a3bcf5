//! `faultproxy LISTEN UPSTREAM`: a fault-injecting TCP proxy for manual experiments. It prints
//! `faultproxy listening on ADDR`, then reads commands from stdin, one per line: `pass` (or
//! `heal`), `blackhole`, `refuse`, `status`. EOF stops it.

use faultproxy::{Mode, Proxy};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!(
            "usage: faultproxy LISTEN_ADDR UPSTREAM_HOST:PORT  (commands on stdin: pass, blackhole, refuse, status)"
        );
        std::process::exit(2);
    };
    let listen = listen.parse().unwrap_or_else(|e| {
        eprintln!("faultproxy: {listen}: {e}");
        std::process::exit(2)
    });
    let proxy = Proxy::start_on(listen, upstream.clone())
        .await
        .unwrap_or_else(|e| {
            eprintln!("faultproxy: cannot listen on {listen}: {e}");
            std::process::exit(1)
        });
    println!("faultproxy listening on {}", proxy.addr());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "pass" | "heal" => proxy.set(Mode::Pass).await,
            "blackhole" => proxy.set(Mode::Blackhole).await,
            "refuse" => proxy.set(Mode::RefuseNew).await,
            "status" | "" => {}
            other => {
                eprintln!("faultproxy: unknown command {other:?}");
                continue;
            }
        }
        println!(
            "{:?} open={} accepted={}",
            proxy.mode(),
            proxy.open_connections(),
            proxy.accepted()
        );
    }
}
