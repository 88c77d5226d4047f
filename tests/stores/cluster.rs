//! A Redis Cluster of six `redis-server` processes (three primaries, three
//! replicas) on free local ports, started for the tests and stopped by the
//! process ids they started.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// A node of a test cluster: its port and its process, while it runs.
struct Node {
    port: u16,
    process: Option<Child>,
}

/// A running cluster. Dropping it kills every process it started.
pub struct Cluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

/// How long one `redis-cli --cluster` command may take before the harness
/// gives up on it (`create` waits for the nodes to agree, and would wait
/// forever if they never do).
const REDIS_CLI_LIMIT: Duration = Duration::from_secs(60);

/// Ports `base..base + 6` free, with their cluster bus ports (port + 10000).
/// Both stay below 32768, where Linux starts handing out the local ports of
/// outgoing connections: a port checked free there can be taken by some
/// other test's connection before its node binds it.
fn free_ports(name: &str, try_number: u64) -> u16 {
    let seed = std::process::id() as u64
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        ^ try_number.wrapping_mul(0x9e37_79b9);
    for attempt in 0..200u64 {
        let base = 12_000 + ((seed.wrapping_add(attempt * 7919)) % 10_000) as u16;
        let free = (base..base + 6).all(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no six free ports with free bus ports");
}

impl Cluster {
    /// Starts six nodes and joins them into a cluster with one replica per
    /// primary; returns once every node says the cluster is ok. A try whose
    /// nodes do not join in time is stopped and made again on other ports.
    pub async fn start(name: &str) -> Self {
        let mut failures = Vec::new();
        for try_number in 0..3 {
            match Self::try_start(name, try_number).await {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("the test cluster {name} did not start: {failures:?}");
    }

    async fn try_start(name: &str, try_number: u64) -> Result<Self, String> {
        let base = free_ports(name, try_number);
        let dir = std::env::temp_dir().join(format!(
            "tower-idempotency-cluster-{name}-{}-{base}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Made before the nodes, so a failure below stops them (dropped).
        let mut cluster = Self {
            nodes: (base..base + 6)
                .map(|port| Node {
                    port,
                    process: None,
                })
                .collect(),
            dir,
        };
        for i in 0..6 {
            cluster.spawn(i);
        }
        for node in &cluster.nodes {
            if !answers_ping(node.port).await {
                return Err(format!("redis-server on port {} did not answer", node.port));
            }
        }
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(
            cluster
                .nodes
                .iter()
                .map(|node| format!("127.0.0.1:{}", node.port)),
        );
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let created = redis_cli(&args).await?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed on ports {base}..{}: {}",
                base + 6,
                complaints(&said(&created))
            ));
        }
        if !cluster.becomes_healthy().await {
            return Err(format!(
                "the nodes on ports {base}..{} did not agree",
                base + 6
            ));
        }
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize) {
        let port = self.nodes[index].port;
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.nodes[index].process = Some(process);
    }

    /// A handle on a cluster another owner runs, to ask it questions (it
    /// stops nothing when dropped).
    pub fn attach(urls: &[String]) -> Self {
        let nodes = urls
            .iter()
            .filter_map(|url| url.rsplit(':').next()?.parse().ok())
            .map(|port| Node {
                port,
                process: None,
            })
            .collect();
        Self {
            nodes,
            dir: PathBuf::new(),
        }
    }

    fn index(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|node| node.port == port)
            .expect("a node of this cluster")
    }

    fn pid(&self, port: u16) -> String {
        let node = &self.nodes[self.index(port)];
        node.process
            .as_ref()
            .expect("a running node")
            .id()
            .to_string()
    }

    /// Freezes a node (SIGSTOP): it holds its connections and answers nothing.
    pub fn freeze(&self, port: u16) {
        let status = Command::new("kill")
            .args(["-STOP", &self.pid(port)])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "SIGSTOP failed");
    }

    /// Thaws a frozen node (SIGCONT).
    pub fn thaw(&self, port: u16) {
        let status = Command::new("kill")
            .args(["-CONT", &self.pid(port)])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "SIGCONT failed");
    }

    /// Kills a node (SIGKILL) and reaps it.
    pub fn kill(&mut self, port: u16) {
        let index = self.index(port);
        if let Some(mut process) = self.nodes[index].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts a killed node again with its cluster configuration: it rejoins,
    /// as a replica once its replica has been promoted.
    pub fn restart(&mut self, port: u16) {
        let index = self.index(port);
        self.spawn(index);
    }

    /// Cuts the replication links of the primary on `port` (`CLIENT KILL
    /// TYPE replica`): what it accepts next reaches no replica until one
    /// reconnects. With its replica frozen first, none reconnects.
    pub async fn cut_replication(&self, port: u16) {
        cut_replication(port).await;
    }

    /// Waits until the node on `port` serves `slot` as its primary.
    pub async fn wait_promoted(&self, port: u16, slot: u16) {
        for _ in 0..400 {
            let primaries = self.primaries().await;
            let serves = primaries
                .get(&port)
                .is_some_and(|ranges| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)));
            if serves {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the replica on port {port} was not promoted");
    }

    /// The port of the replica of the primary on `port`.
    pub async fn replica_of(&self, port: u16) -> u16 {
        let mut connection = connect(port).await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut connection)
            .await
            .unwrap();
        info.lines()
            .find(|line| line.starts_with("slave0:"))
            .and_then(|line| line.split(',').find_map(|part| part.strip_prefix("port=")))
            .and_then(|port| port.parse().ok())
            .expect("the primary has a replica")
    }

    /// The node id of the node on `port`.
    pub async fn id(&self, port: u16) -> String {
        let mut connection = connect(port).await.unwrap();
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Moves `slots` slots from the primary on `from` to the primary on `to`
    /// with `redis-cli --cluster reshard`, keys and all; returns when done.
    pub async fn reshard(&self, from: u16, to: u16, slots: u32) {
        let (from, to) = (self.id(from).await, self.id(to).await);
        let seed = format!("127.0.0.1:{}", self.nodes[0].port);
        let mut last = String::new();
        // Right after a reshard the nodes may not agree on the configuration
        // yet, and redis-cli refuses to start another: try again shortly.
        let reshard = [
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]
        .map(String::from);
        for _ in 0..40 {
            let output = match redis_cli(&reshard).await {
                Ok(output) if output.status.success() => return,
                Ok(output) => output,
                Err(why) => {
                    last = why;
                    continue;
                }
            };
            let said = said(&output);
            last = complaints(&said);
            // A move cut short (a MIGRATE timing out under load) leaves a
            // slot open, and redis-cli refuses every reshard until the
            // cluster is fixed.
            if said.contains("migrating")
                || said.contains("importing")
                || said.contains("open slot")
            {
                let fix = ["--cluster", "fix", &seed, "--cluster-yes"].map(String::from);
                let _ = redis_cli(&fix).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("redis-cli --cluster reshard failed: {last}");
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// Waits until every running node reports `cluster_state:ok` and three
    /// primaries that each have a replica connected.
    pub async fn wait_healthy(&self) {
        assert!(
            self.becomes_healthy().await,
            "the test cluster did not become healthy"
        );
    }

    /// Whether the cluster is healthy within 20 s (polled).
    async fn becomes_healthy(&self) -> bool {
        for _ in 0..400 {
            if self.healthy().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn healthy(&self) -> bool {
        for node in self
            .nodes
            .iter()
            .filter(|node| node.process.is_some() || self.dir.as_os_str().is_empty())
        {
            let Ok(mut connection) = connect(node.port).await else {
                return false;
            };
            let info: String = match redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut connection)
                .await
            {
                Ok(info) => info,
                Err(_) => return false,
            };
            if !info.contains("cluster_state:ok") {
                return false;
            }
        }
        let primaries = self.primaries().await;
        if primaries.len() != 3 {
            return false;
        }
        for port in primaries.keys() {
            let Ok(mut connection) = connect(*port).await else {
                return false;
            };
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut connection)
                .await
                .unwrap_or_default();
            if !info.contains("connected_slaves:1") || !info.contains("state=online") {
                return false;
            }
        }
        true
    }

    /// The primaries that serve slots, by port, with their slot ranges.
    pub async fn primaries(&self) -> HashMap<u16, Vec<(u16, u16)>> {
        let mut primaries: HashMap<u16, Vec<(u16, u16)>> = HashMap::new();
        for node in self
            .nodes
            .iter()
            .filter(|node| node.process.is_some() || self.dir.as_os_str().is_empty())
        {
            let Ok(mut connection) = connect(node.port).await else {
                continue;
            };
            let Ok(slots) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Vec<redis::Value>>(&mut connection)
                .await
            else {
                continue;
            };
            for range in slots {
                let redis::Value::Array(parts) = range else {
                    continue;
                };
                let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                    (parts.first(), parts.get(1))
                else {
                    continue;
                };
                let Some(redis::Value::Array(primary)) = parts.get(2) else {
                    continue;
                };
                let Some(redis::Value::Int(port)) = primary.get(1) else {
                    continue;
                };
                primaries
                    .entry(*port as u16)
                    .or_default()
                    .push((*start as u16, *end as u16));
            }
            return primaries;
        }
        primaries
    }

    /// The port of the primary that serves `slot`.
    pub async fn primary_of_slot(&self, slot: u16) -> u16 {
        let primaries = self.primaries().await;
        primaries
            .iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(port, _)| *port)
            .expect("every slot has a primary")
    }

    /// The slot of `key`, as the cluster computes it.
    pub async fn slot(&self, key: &str) -> u16 {
        let port = self.nodes[0].port;
        let mut connection = connect(port).await.unwrap();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap()
    }
}

/// Cuts the replication links of the Redis on `port` (`CLIENT KILL TYPE
/// replica`), which must have exactly one.
pub async fn cut_replication(port: u16) {
    let mut connection = connect(port).await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the primary had one replica link");
}

/// A plain connection to one node.
pub async fn connect(port: u16) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Runs `redis-cli` with `args`, killed if it takes longer than
/// [`REDIS_CLI_LIMIT`].
async fn redis_cli(args: &[String]) -> Result<std::process::Output, String> {
    let running = tokio::process::Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(REDIS_CLI_LIMIT, running).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(format!("redis-cli did not run: {error}")),
        Err(_) => Err(format!(
            "redis-cli {} took over {REDIS_CLI_LIMIT:?}",
            args.iter().take(2).cloned().collect::<Vec<_>>().join(" ")
        )),
    }
}

/// Everything redis-cli printed, on either stream.
fn said(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What redis-cli objected to in `said`: its errors and warnings, not its
/// progress lines.
fn complaints(said: &str) -> String {
    said.lines()
        .filter(|line| line.contains("[ERR]") || line.contains("[WARNING]") || line.contains("ERR"))
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn answers_ping(port: u16) -> bool {
    for _ in 0..200 {
        if let Ok(mut connection) = connect(port).await
            && redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut process) = node.process.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
