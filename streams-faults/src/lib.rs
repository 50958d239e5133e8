//! The fault suite of xnai-streams: what its scenarios share beyond one
//! test file.
//!
//! - [`Proxy`]: a TCP proxy between a client and a Redis server that the
//!   test controls while it runs: it passes bytes through, delays them,
//!   holds them (a network partition), resets connections (all of them, or
//!   one in the middle of a reply) and refuses new ones.
//!
//! The scenarios themselves are the crate's tests (`tests/*.rs`), and the
//! processes they start, kill and restart are the `xnai-fault-agent`
//! binary.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! use streams_faults::Proxy;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // An echo server stands in for Redis.
//! let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = echo.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut socket, _)) = echo.accept().await {
//!         tokio::spawn(async move {
//!             let (mut r, mut w) = socket.split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! });
//!
//! let proxy = Proxy::start(upstream).await?;
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"ping").await?;
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"ping");
//!
//! // Cut every connection with a reset: the client's next read fails.
//! assert_eq!(proxy.reset(), 1);
//! let mut buf = [0; 1];
//! assert!(matches!(client.read(&mut buf).await, Err(_) | Ok(0)));
//!
//! // Slow, then back to normal.
//! proxy.delay(Duration::from_millis(20));
//! proxy.pass();
//! # Ok(()) }
//! ```

pub mod proxy;

pub use proxy::Proxy;
