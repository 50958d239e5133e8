//! A TCP proxy for network faults, controlled by the test while it runs.
//!
//! [`Proxy::start`] listens on a free port of `127.0.0.1` and forwards every
//! connection to an upstream address (a Redis server). Each connection is
//! relayed in both directions, chunk by chunk, and the test changes what
//! happens to the chunks at any time:
//!
//! | call | what the client sees |
//! |---|---|
//! | [`pass`](Proxy::pass) | a working network (the start state) |
//! | [`delay`](Proxy::delay) | latency: each chunk is forwarded `d` after it was read |
//! | [`blackhole`](Proxy::blackhole) | a partition: nothing is forwarded either way, the sockets stay open (half-open connections); bytes wait, as TCP would retransmit them, and flow again after [`pass`](Proxy::pass) |
//! | [`reset`](Proxy::reset) | every open connection closed with a reset (`RST`) |
//! | [`reset_mid_reply`](Proxy::reset_mid_reply) | the next chunk from the server cut short, then that connection reset |
//! | [`down`](Proxy::down) | every connection reset and new ones refused, until [`up`](Proxy::up) |
//!
//! A blackhole holds bytes rather than discarding them: a real partition
//! cannot make TCP lose bytes inside a connection that lives on, it can only
//! delay them or end the connection. Discarding would desynchronise every
//! pipelined protocol in a way no network does.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most bytes read (and forwarded) at once.
const CHUNK: usize = 16 * 1024;

/// Longest wait for the upstream to accept a connection.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);

/// Chunks read but not yet forwarded, per direction of a connection.
const QUEUED_CHUNKS: usize = 64;

/// What the test asked for; every relay watches it.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    /// Added to every chunk's forwarding time.
    delay: Duration,
    /// Nothing is forwarded (the partition).
    holding: bool,
    /// New connections are refused.
    down: bool,
    /// Bumped by every reset: connections opened before it end.
    resets: u64,
    /// The proxy was dropped.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: watch::Sender<State>,
    /// Bytes to forward of the next chunk from the server before a reset.
    mid_reply: Mutex<Option<usize>>,
    open: AtomicUsize,
    accepted: AtomicU64,
    reset: AtomicU64,
}

impl Shared {
    fn take_mid_reply(&self) -> Option<usize> {
        self.mid_reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A TCP proxy on `127.0.0.1` whose faults the test turns on and off; see
/// the [module docs](self).
///
/// It runs on the Tokio runtime it was started on, which must keep running
/// (a test's `multi_thread` runtime, say, while the test sleeps with
/// `tokio::time::sleep`). Dropping it resets every connection and stops
/// listening.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of `127.0.0.1` and forwards to `upstream`.
    ///
    /// # Errors
    /// If no port can be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State::default());
        let shared = Arc::new(Shared {
            upstream,
            state,
            mid_reply: Mutex::new(None),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            reset: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, addr, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://<addr>`: the proxy as a Redis URL.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Ends every fault: no delay, bytes flow (held ones first), new
    /// connections are accepted, no reset is armed.
    pub fn pass(&self) {
        *self
            .shared
            .mid_reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.shared.state.send_modify(|s| {
            s.delay = Duration::ZERO;
            s.holding = false;
            s.down = false;
        });
    }

    /// Forwards each chunk `delay` after it was read, in both directions
    /// (latency, not a throughput limit: chunks read meanwhile are not
    /// held up further). `Duration::ZERO` removes the delay.
    pub fn delay(&self, delay: Duration) {
        self.shared.state.send_modify(|s| s.delay = delay);
    }

    /// Stops forwarding in both directions and keeps every socket open:
    /// clients see connections that accept writes and never answer. Bytes
    /// are held, not lost, until [`pass`](Self::pass) (or a reset ends the
    /// connection). New connections are accepted and held too.
    pub fn blackhole(&self) {
        self.shared.state.send_modify(|s| s.holding = true);
    }

    /// Closes every open connection with a reset (`SO_LINGER` 0, so the
    /// peer gets `RST`, not `FIN`), on both sides; returns how many were
    /// open. Connections made afterwards are not affected.
    pub fn reset(&self) -> usize {
        let open = self.connections();
        self.shared.state.send_modify(|s| s.resets += 1);
        open
    }

    /// Arms a cut: the next chunk the server sends, on whichever
    /// connection, is forwarded only in part (at most `bytes`, and never
    /// all of it), then that connection is reset. The client is left with
    /// a reply cut short.
    pub fn reset_mid_reply(&self, bytes: usize) {
        *self
            .shared
            .mid_reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(bytes);
    }

    /// Whether a [`reset_mid_reply`](Self::reset_mid_reply) is armed and
    /// has not happened yet.
    pub fn mid_reply_armed(&self) -> bool {
        self.shared
            .mid_reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The server is gone, as far as clients can tell: every open
    /// connection is reset, and new ones are refused (the port is closed)
    /// until [`up`](Self::up) or [`pass`](Self::pass).
    pub fn down(&self) {
        self.shared.state.send_modify(|s| {
            s.down = true;
            s.resets += 1;
        });
    }

    /// Accepts connections again after [`down`](Self::down).
    pub fn up(&self) {
        self.shared.state.send_modify(|s| s.down = false);
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections ended with a reset since the start.
    pub fn resets(&self) -> u64 {
        self.shared.reset.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.state.send_modify(|s| s.closed = true);
        self.accept.abort();
    }
}

/// Accepts connections while the proxy is up; closes the port while it is
/// down (so connecting is refused) and binds it again when it comes up.
async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut state = shared.state.subscribe();
    let mut listener = Some(listener);
    loop {
        if let Some(open) = &listener {
            tokio::select! {
                accepted = open.accept() => match accepted {
                    Ok((socket, _)) => {
                        shared.accepted.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve(socket, Arc::clone(&shared)));
                    }
                    // Out of descriptors, say: do not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                gone = async { state.wait_for(|s| s.down || s.closed).await.is_err() } => {
                    if gone {
                        return;
                    }
                    listener = None;
                }
            }
        } else {
            if state.wait_for(|s| !s.down || s.closed).await.is_err() {
                return;
            }
            // The port was ours a moment ago; another process may take it
            // meanwhile, in which case clients keep being refused.
            match TcpListener::bind(addr).await {
                Ok(again) => listener = Some(again),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        if state.borrow().closed {
            return;
        }
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A side closed, or an error: close the other side normally.
    Closed,
    /// Reset both sides.
    Reset,
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a Shared);

impl<'a> Open<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.open.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Closes `socket` with a reset rather than an orderly close.
// Tokio deprecates `set_linger` because a non-zero linger blocks the thread
// in `close`; a zero linger never blocks: the kernel sends `RST` at once.
#[allow(deprecated)]
fn rst(socket: TcpStream) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
}

/// Relays one client connection to the upstream until a side closes or
/// the test resets it.
async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let _open = Open::new(&shared);
    let mut state = shared.state.subscribe();
    let (generation, down) = {
        let s = state.borrow();
        (s.resets, s.down || s.closed)
    };
    if down {
        shared.reset.fetch_add(1, Ordering::Relaxed);
        rst(client);
        return;
    }
    let connect = tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(shared.upstream));
    let Ok(Ok(mut server)) = connect.await else {
        // The upstream is gone: the client sees its connection reset.
        rst(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let to_server = pipe(&mut client_read, &mut server_write, &shared, false);
        let to_client = pipe(&mut server_read, &mut client_write, &shared, true);
        let reset = async {
            let _ = state.wait_for(|s| s.resets > generation || s.closed).await;
            End::Reset
        };
        tokio::select! {
            end = to_server => end,
            end = to_client => end,
            end = reset => end,
        }
    };
    if end == End::Reset {
        shared.reset.fetch_add(1, Ordering::Relaxed);
        rst(client);
        rst(server);
    }
}

/// Forwards one direction of a connection: a reader task queues each
/// chunk with the time it is due, a writer forwards it then. Both stop
/// while the proxy holds bytes. Ends when the reading side closes and
/// everything read was forwarded, when writing fails, or (towards the
/// client) with a cut armed by [`Proxy::reset_mid_reply`].
async fn pipe<R, W>(reader: &mut R, writer: &mut W, shared: &Shared, to_client: bool) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let read = async move {
        let mut state = shared.state.subscribe();
        let mut buf = vec![0; CHUNK];
        loop {
            if state.wait_for(|s| !s.holding).await.is_err() {
                return;
            }
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + state.borrow().delay;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let write = async {
        let mut state = shared.state.subscribe();
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if state.wait_for(|s| !s.holding).await.is_err() {
                return End::Closed;
            }
            if to_client {
                if let Some(bytes) = shared.take_mid_reply() {
                    let cut = bytes.min(chunk.len().saturating_sub(1));
                    let _ = writer.write_all(&chunk[..cut]).await;
                    let _ = writer.flush().await;
                    return End::Reset;
                }
            }
            if writer.write_all(&chunk).await.is_err() {
                return End::Closed;
            }
        }
        End::Closed
    };
    let mut read = pin!(read);
    let mut write = pin!(write);
    let mut reading = true;
    loop {
        tokio::select! {
            () = &mut read, if reading => reading = false,
            end = &mut write => return end,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An upstream that echoes what it gets.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(client: &mut TcpStream, what: &[u8]) -> io::Result<Vec<u8>> {
        client.write_all(what).await?;
        let mut got = vec![0; what.len()];
        client.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn passes_delays_and_holds() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"abc").await.unwrap(), b"abc");

        proxy.delay(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(roundtrip(&mut c, b"d").await.unwrap(), b"d");
        // Both ways.
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        proxy.delay(Duration::ZERO);

        proxy.blackhole();
        c.write_all(b"held").await.unwrap();
        let mut buf = [0; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut buf)).await;
        assert!(read.is_err(), "nothing comes back through a blackhole");
        proxy.pass();
        tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            &buf, b"held",
            "held bytes are forwarded after the partition"
        );
    }

    #[tokio::test]
    async fn resets_cuts_and_refuses() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"x").await.unwrap(), b"x");
        assert_eq!(proxy.reset(), 1);
        let mut buf = [0; 8];
        let err = c.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.reset_mid_reply(2);
        assert!(proxy.mid_reply_armed());
        c.write_all(b"abcdef").await.unwrap();
        let mut got = Vec::new();
        let end = loop {
            match c.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(got, b"ab");
        assert_eq!(end, Some(io::ErrorKind::ConnectionReset));
        assert!(!proxy.mid_reply_armed());

        proxy.down();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        proxy.up();
        let mut c = loop {
            if let Ok(c) = TcpStream::connect(proxy.addr()).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(roundtrip(&mut c, b"back").await.unwrap(), b"back");
        assert!(proxy.resets() >= 2);
        assert!(proxy.accepted() >= 3);
    }
}
