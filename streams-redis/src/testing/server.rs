//! Private `redis-server` processes on free ports.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{answers_ping, free_port};

/// A private `redis-server` on a free port of `127.0.0.1`, for tests that
/// kill and restart servers. Without extra arguments it keeps no data on
/// disk (`--save "" --appendonly no`).
///
/// Dropping it kills the server and removes its directory. A watchdog
/// process kills it too if the test process dies first.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// Starts a server without persistence.
    ///
    /// # Errors
    /// If `redis-server` is not on `PATH` or does not come up within 10 s.
    pub fn start() -> io::Result<Self> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments, e.g.
    /// `["--appendonly", "yes"]` to keep data across [`restart`](Self::restart).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with_args(args: &[&str]) -> io::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xnai-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut last_error = None;
        // Another process may take the free port before the server binds it.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port()?,
                dir: dir.clone(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                child: None,
                watchdog: None,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if answers_ping(self.port, Duration::from_millis(200)) {
                break;
            }
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited with {status}",
                    self.port
                )));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on port {} did not answer PING", self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.watchdog = spawn_watchdog(child.id(), &self.dir).ok();
        self.child = Some(child);
        Ok(())
    }

    /// Starts a server replicating the one on `127.0.0.1:<master_port>`
    /// (`--replicaof`), with `args` added.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_replica_of(master_port: u16, args: &[&str]) -> io::Result<Self> {
        let port = master_port.to_string();
        let mut all = vec!["--replicaof", "127.0.0.1", &port];
        all.extend_from_slice(args);
        Self::start_with_args(&all)
    }

    /// Waits until this server, a master, counts `replicas` replicas online
    /// (`INFO replication`, through `redis-cli`).
    ///
    /// # Errors
    /// If they are not online within `limit`; the error quotes the last
    /// `INFO replication`.
    pub fn wait_replicas_online(&self, replicas: usize, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["info", "replication"])
                .output()?;
            let info = String::from_utf8_lossy(&out.stdout);
            let online = info.matches("state=online").count();
            if info.contains(&format!("connected_slaves:{replicas}")) && online == replicas {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{replicas} replica(s) not online after {limit:?}:\n{info}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (where persistence files go).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server with `SIGSTOP`: connections stay open and nothing
    /// answers, as with a stalled host.
    ///
    /// # Errors
    /// If the server is not running or cannot be signalled.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("STOP")
    }

    /// Lets a [`pause`](Self::pause)d server go on with `SIGCONT`.
    ///
    /// # Errors
    /// As [`pause`](Self::pause).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{name} {pid} failed")))
        }
    }

    /// Kills the server with `SIGKILL`, as a crash would. Its data directory
    /// stays, for [`restart`](Self::restart).
    ///
    /// # Errors
    /// If the process cannot be signalled.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        Ok(())
    }

    /// Starts the server again on the same port and directory (killing it
    /// first if it still runs).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.launch()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A shell loop that kills the server when this process is gone (there is
/// no safe way to hook process exit) and then removes its directory. It
/// ends by itself if the server dies first.
fn spawn_watchdog(server_pid: u32, dir: &Path) -> io::Result<Child> {
    const SCRIPT: &str = r#"
        while kill -0 "$1" 2>/dev/null; do
            kill -0 "$2" 2>/dev/null || exit 0
            sleep 1
        done
        kill -9 "$2" 2>/dev/null
        rm -rf "$3"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("xnai-redis-watchdog")
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}
