//! A test-only TCP proxy that puts network faults between two real processes: a coordinator
//! replica and PostgreSQL, executors and a replica.
//!
//! [`Proxy::start`] listens on a local port and relays every connection to an upstream address.
//! Its link can be switched at any time, by the test or the chaos runner that owns it:
//!
//! - **pass** (the start, and [`heal`](Proxy::heal)): bytes flow both ways.
//! - **blackhole**: a dead link. Open connections stay open, but the proxy stops reading from
//!   either side and forwards nothing, so neither peer gets data, a FIN or a RST — its writes fill
//!   the socket buffers and then block, its reads wait, exactly as when a cable is cut or a
//!   firewall starts dropping packets. New connections do not complete either: the listen
//!   backlog is shrunk to zero and filled, so the kernel drops SYNs and a connect times out
//!   (no refusal). Bytes the proxy had already read when the link went dead are held, not
//!   discarded, and each stream resumes intact on heal — what TCP's retransmission gives after
//!   an outage shorter than its give-up time (dropping bytes from the middle of a stream is
//!   something no real link does).
//! - **refuse-new**: open connections keep flowing; new ones are refused (the listening socket
//!   is closed, so the kernel answers a SYN with RST) — a process that stopped listening.
//!
//! Switching returns once the proxy has applied the mode. Dropping the [`Proxy`] closes its
//! listener and every connection it relays.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Blackhole,
    RefuseNew,
}

impl Mode {
    /// Whether bytes of open connections flow.
    fn flowing(self) -> bool {
        self != Mode::Blackhole
    }
}

/// The listen backlog while new connections are accepted.
const BACKLOG: u32 = 1024;

/// How long connecting to the upstream may take; a client whose upstream does not answer in
/// time is reset.
const CONNECT_UPSTREAM_WITHIN: Duration = Duration::from_secs(5);

/// How long filling the backlog with the proxy's own connection may take (loopback: at once;
/// a timeout means the backlog was full already).
const PLUG_WITHIN: Duration = Duration::from_millis(200);

/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// A running proxy; see the crate documentation.
pub struct Proxy {
    addr: SocketAddr,
    upstream: String,
    /// The mode the owner asked for, with a generation so that each request can be awaited.
    requested: watch::Sender<(Mode, u64)>,
    /// The last generation the accept loop has applied.
    applied: watch::Receiver<u64>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counts {
    open: AtomicUsize,
    accepted: AtomicU64,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy on 127.0.0.1 (a port the kernel picks) relaying to `upstream` (`host:port`,
    /// resolved for every connection).
    pub async fn start(upstream: impl Into<String>) -> io::Result<Proxy> {
        Proxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// A proxy listening on `listen` relaying to `upstream`.
    pub async fn start_on(listen: SocketAddr, upstream: impl Into<String>) -> io::Result<Proxy> {
        let listener = bind(listen)?;
        let addr = listener.local_addr()?;
        let upstream = upstream.into();
        let (requested, requests) = watch::channel((Mode::Pass, 0));
        let (applied_tx, applied) = watch::channel(0);
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(accept_loop(
            addr,
            listener,
            upstream.clone(),
            requests,
            applied_tx,
            counts.clone(),
        ));
        Ok(Proxy {
            addr,
            upstream,
            requested,
            applied,
            counts,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn mode(&self) -> Mode {
        self.requested.borrow().0
    }

    /// Connections relayed now (including frozen ones).
    pub fn open_connections(&self) -> usize {
        self.counts.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::Relaxed)
    }

    /// Cuts the link silently (see the crate documentation).
    pub async fn blackhole(&self) {
        self.set(Mode::Blackhole).await
    }

    /// Refuses new connections; open ones keep flowing.
    pub async fn refuse_new(&self) {
        self.set(Mode::RefuseNew).await
    }

    /// Back to passing everything; frozen connections resume where they stopped.
    pub async fn heal(&self) {
        self.set(Mode::Pass).await
    }

    /// Switches to `mode` and returns once the accept loop has applied it.
    pub async fn set(&self, mode: Mode) {
        let mut generation = 0;
        self.requested.send_modify(|(m, g)| {
            *m = mode;
            *g += 1;
            generation = *g;
        });
        let mut applied = self.applied.clone();
        // Err only if the accept loop is gone, which happens only when the proxy is dropped.
        let _ = applied.wait_for(|g| *g >= generation).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping the loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Changes the backlog of a listening socket (Linux applies a second listen() at once).
fn set_backlog(listener: &TcpListener, backlog: i32) -> io::Result<()> {
    socket2::SockRef::from(listener).listen(backlog)
}

/// The listening side: applies each requested mode, accepts while passing, and owns every
/// connection task.
async fn accept_loop(
    addr: SocketAddr,
    listener: TcpListener,
    upstream: String,
    mut requests: watch::Receiver<(Mode, u64)>,
    applied: watch::Sender<u64>,
    counts: Arc<Counts>,
) {
    let mut connections = JoinSet::new();
    let mut listener = Some(listener);
    // While blackholed: our own connection that fills the zero-length backlog, and its address
    // (to recognise and drop it when it is accepted after the heal).
    let mut plug: Option<TcpStream> = None;
    let mut plug_addr: Option<SocketAddr> = None;
    loop {
        let (mode, generation) = *requests.borrow_and_update();
        if let Err(e) = apply(mode, addr, &mut listener, &mut plug, &mut plug_addr).await {
            // Rebinding after refuse-new can fail if another process took the port meanwhile;
            // try again shortly (the owner's call waits for it).
            eprintln!("faultproxy {addr}: cannot switch to {mode:?}: {e}; retrying");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        applied.send_replace(generation);
        let accepting = mode == Mode::Pass || (mode == Mode::RefuseNew && listener.is_some());
        tokio::select! {
            changed = requests.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = accept(listener.as_ref(), accepting) => match accepted {
                Ok((client, peer)) => {
                    if Some(peer) == plug_addr {
                        plug_addr = None;
                        continue;
                    }
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                    let open = Open::new(counts.clone());
                    connections.spawn(relay(client, upstream.clone(), requests.clone(), open));
                }
                // Out of descriptors and the like: the client is not accepted; go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Accepts one connection, or waits forever when not accepting.
async fn accept(
    listener: Option<&TcpListener>,
    accepting: bool,
) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) if accepting => l.accept().await,
        _ => std::future::pending().await,
    }
}

/// Puts the listening socket in the state `mode` needs.
async fn apply(
    mode: Mode,
    addr: SocketAddr,
    listener: &mut Option<TcpListener>,
    plug: &mut Option<TcpStream>,
    plug_addr: &mut Option<SocketAddr>,
) -> io::Result<()> {
    match mode {
        Mode::Pass => {
            match listener {
                Some(l) => set_backlog(l, BACKLOG as i32)?,
                None => *listener = Some(bind(addr)?),
            }
            // Its queued other end is dropped when accepted (plug_addr).
            *plug = None;
        }
        Mode::Blackhole => {
            let l = match listener {
                Some(l) => l,
                None => listener.insert(bind(addr)?),
            };
            set_backlog(l, 0)?;
            if plug.is_none() {
                // A backlog of 0 still queues one connection: make it ours, so the first
                // client's SYN is dropped too. A timeout means the queue was full already.
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(PLUG_WITHIN, TcpStream::connect(addr)).await
                {
                    *plug_addr = stream.local_addr().ok();
                    *plug = Some(stream);
                }
            }
        }
        Mode::RefuseNew => {
            // Closing the listening socket resets what is queued and refuses what comes.
            *listener = None;
            *plug = None;
            *plug_addr = None;
        }
    }
    Ok(())
}

/// Counts a connection as open for as long as it lives.
struct Open(Arc<Counts>);

impl Open {
    fn new(counts: Arc<Counts>) -> Open {
        counts.open.fetch_add(1, Ordering::Relaxed);
        Open(counts)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Relays one accepted connection until both directions have ended, or either fails.
async fn relay(
    client: TcpStream,
    upstream: String,
    modes: watch::Receiver<(Mode, u64)>,
    _open: Open,
) {
    let server =
        match tokio::time::timeout(CONNECT_UPSTREAM_WITHIN, TcpStream::connect(&upstream)).await {
            Ok(Ok(server)) => server,
            _ => {
                // The upstream is down: reset the client, the nearest thing to a refusal now that
                // its connection was accepted.
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, modes.clone());
    let down = pump(server_read, client_write, modes);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let ended = tokio::select! {
            ended = &mut up, if !up_done => { up_done = true; ended }
            ended = &mut down, if !down_done => { down_done = true; ended }
        };
        if ended.is_err() {
            // A reset or an error on either side ends both (dropping the halves closes them).
            return;
        }
    }
}

/// Copies `from` to `to` while the link flows; a FIN is passed on as a FIN.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut modes: watch::Receiver<(Mode, u64)>,
) -> io::Result<()> {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        flowing(&mut modes).await?;
        let n = tokio::select! {
            biased;
            // Stop reading the moment the link goes dead (a read is cancel-safe).
            changed = modes.changed() => {
                changed.map_err(|_| gone())?;
                continue;
            }
            n = from.read(&mut buffer) => n?,
        };
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        // Read just as the link died: hold the bytes until it comes back.
        flowing(&mut modes).await?;
        to.write_all(&buffer[..n]).await?;
    }
}

/// Returns once bytes may flow.
async fn flowing(modes: &mut watch::Receiver<(Mode, u64)>) -> io::Result<()> {
    loop {
        if modes.borrow_and_update().0.flowing() {
            return Ok(());
        }
        modes.changed().await.map_err(|_| gone())?;
    }
}

fn gone() -> io::Error {
    io::Error::other("the proxy was dropped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        stream.write_all(text).await.unwrap();
        let mut back = vec![0; text.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn passes_bytes_both_ways() {
        let proxy = Proxy::start(echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
        assert_eq!(proxy.open_connections(), 1);
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn a_blackhole_neither_delivers_nor_resets_and_the_stream_resumes_intact() {
        let proxy = Proxy::start(echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"before").await, b"before");
        proxy.blackhole().await;
        stream.write_all(b"during").await.unwrap();
        let mut byte = [0u8; 1];
        // Nothing comes back, and the connection is neither closed nor reset: the read waits.
        assert!(
            tokio::time::timeout(SHORT, stream.read(&mut byte))
                .await
                .is_err(),
            "a dead link delivers nothing and reports nothing"
        );
        // New connections do not complete (no refusal either).
        let connect = tokio::time::timeout(SHORT, TcpStream::connect(proxy.addr())).await;
        assert!(connect.is_err(), "connect must time out, got {connect:?}");
        proxy.heal().await;
        let mut back = [0u8; 6];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"during", "held bytes arrive after the heal");
        assert_eq!(round_trip(&mut stream, b"after").await, b"after");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"new").await, b"new");
    }

    #[tokio::test]
    async fn refusing_new_connections_keeps_open_ones() {
        let proxy = Proxy::start(echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        // Accepted (a connection still in the listen queue is reset with the listener).
        assert_eq!(round_trip(&mut stream, b"first").await, b"first");
        proxy.refuse_new().await;
        let refused = TcpStream::connect(proxy.addr()).await;
        assert_eq!(
            refused.unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        assert_eq!(round_trip(&mut stream, b"still").await, b"still");
        proxy.heal().await;
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"back").await, b"back");
    }

    #[tokio::test]
    async fn a_closed_peer_is_passed_on_as_a_fin() {
        let proxy = Proxy::start(echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"x").await, b"x");
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_upstream_resets_the_client() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let proxy = Proxy::start(dead.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("the client learns at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn blackhole_then_refuse_then_heal() {
        let proxy = Proxy::start(echo_server().await.to_string()).await.unwrap();
        proxy.blackhole().await;
        proxy.refuse_new().await;
        assert_eq!(
            TcpStream::connect(proxy.addr()).await.unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        proxy.blackhole().await;
        assert!(
            tokio::time::timeout(SHORT, TcpStream::connect(proxy.addr()))
                .await
                .is_err()
        );
        proxy.heal().await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ok").await, b"ok");
        assert_eq!(proxy.mode(), Mode::Pass);
    }
}
