//! A private Redis Cluster: masters and their replicas, each a
//! [`RedisServer`] on free ports, joined with `redis-cli --cluster create`.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{RedisServer, free_port};

/// Slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// A Redis Cluster of private servers on `127.0.0.1`, for cluster tests.
///
/// Every node is a [`RedisServer`] (no persistence, its own directory, a
/// watchdog that kills it if the test process dies), started with
/// `cluster-enabled yes` and a cluster bus port of its own; `redis-cli
/// --cluster create ... --cluster-yes` assigns the slots and the replicas.
/// Dropping the cluster stops every node, also when a test fails.
///
/// ```no_run
/// use streams_redis::testing::RedisCluster;
///
/// let cluster = RedisCluster::start(3, 1)?; // 3 masters, 1 replica each
/// assert_eq!(cluster.nodes().len(), 6);
/// println!("seed nodes: {:?}", cluster.urls());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
    replicas: usize,
}

impl RedisCluster {
    /// Starts `masters` masters (at least 3, as Redis requires) with
    /// `replicas` replicas each, and waits until every node reports the
    /// cluster `ok` with every slot assigned, every node known, and every
    /// replica in place.
    ///
    /// # Errors
    /// If `redis-server` or `redis-cli` is not on `PATH`, a node does not
    /// come up, `redis-cli --cluster create` fails, or the cluster is not
    /// `ok` within 30 s.
    pub fn start(masters: usize, replicas: usize) -> io::Result<Self> {
        if masters < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Redis Cluster needs at least 3 masters",
            ));
        }
        let total = masters * (1 + replicas);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            let bus = free_port()?.to_string();
            nodes.push(RedisServer::start_with_args(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                &bus,
                // Replicas sync at once (Redis waits 5 s by default for
                // more replicas to share a sync): a replica that never
                // synced cannot be promoted.
                "--repl-diskless-sync-delay",
                "0",
            ])?);
        }
        let cluster = Self {
            nodes,
            masters,
            replicas,
        };
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.addrs())
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run redis-cli: {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Every node, masters and replicas, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to kill, pause or restart it.
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// How many masters the cluster was created with.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// Every node's URL, `redis://127.0.0.1:<port>`: seed nodes for a
    /// cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every node's `127.0.0.1:<port>`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// `CLUSTER INFO` of the node on `port`, as text.
    ///
    /// # Errors
    /// If `redis-cli` cannot be run or the node does not answer.
    pub fn info(port: u16) -> io::Result<String> {
        Self::cli(port, &["cluster", "info"])
    }

    /// `CLUSTER NODES` of the node on `port`, as text.
    ///
    /// # Errors
    /// If `redis-cli` cannot be run or the node does not answer.
    pub fn nodes_of(port: u16) -> io::Result<String> {
        Self::cli(port, &["cluster", "nodes"])
    }

    /// `redis-cli` on `port` with `args`: its output.
    fn cli(port: u16, args: &[&str]) -> io::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli {} on port {port} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until every node reports the cluster `ok`, with every slot
    /// assigned, every node known, and every replica known to all and in
    /// sync with its master (`master_link_status:up`), so that it can take
    /// over when its master fails.
    ///
    /// # Errors
    /// If that does not happen within `limit`; the error quotes a node's
    /// `CLUSTER INFO`.
    pub fn wait_ok(&self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        let slots = format!("cluster_slots_assigned:{SLOTS}");
        loop {
            let mut last = String::new();
            let mut all_ok = true;
            for node in &self.nodes {
                let info = Self::info(node.port()).unwrap_or_default();
                let replicas = Self::nodes_of(node.port())
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("slave"))
                    .count();
                let replication =
                    Self::cli(node.port(), &["info", "replication"]).unwrap_or_default();
                let synced = !replication.contains("role:slave")
                    || replication.contains("master_link_status:up");
                if !(info.contains("cluster_state:ok")
                    && info.contains(&known)
                    && info.contains(&slots)
                    && replicas == self.masters * self.replicas
                    && synced)
                {
                    all_ok = false;
                    last = format!("{info}replicas known: {replicas}\n{replication}");
                    break;
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the cluster is not ok after {limit:?}:\n{last}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
