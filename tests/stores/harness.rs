//! The harness of the store tests: each test runs on a Tokio runtime of the
//! flavour it asks for, and a test whose server is not there is marked
//! ignored (visible in the summary), unless the services are required.

use std::future::Future;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use libtest_mimic::Trial;

/// The runtime a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Flavor {
    /// One thread, Tokio's clock paused (time jumps when all tasks wait).
    Paused,
    /// One thread, real time.
    CurrentThread,
    /// This many worker threads, real time.
    MultiThread(usize),
}

/// The longest a test on real time may run. A test that hangs (a server
/// that never answers, a tool that waits forever) then fails with its name,
/// and what it started is dropped and stopped, instead of holding up the
/// whole run until CI gives up on it.
const TEST_LIMIT: Duration = Duration::from_secs(600);

/// A test named `name` that runs `test` to its end on a runtime of `flavor`.
/// A panic in it fails the test, and so does a test on real time running
/// past [`TEST_LIMIT`]. (On the paused clock, time jumps to the next timer,
/// so a limit there would cut tests that wait days on purpose.)
pub fn trial<F, Fut>(name: impl Into<String>, flavor: Flavor, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    Trial::test(name, move || {
        let runtime = match flavor {
            Flavor::Paused => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build(),
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavor::MultiThread(workers) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build(),
        }
        .map_err(|error| format!("no runtime: {error}"))?;
        if matches!(flavor, Flavor::Paused) {
            runtime.block_on(test());
            return Ok(());
        }
        let finished = runtime.block_on(async { tokio::time::timeout(TEST_LIMIT, test()).await });
        // Not a plain drop: that would wait for ever on a blocking task the
        // hung test left behind.
        runtime.shutdown_timeout(Duration::from_secs(10));
        finished.map_err(|_| format!("did not finish within {TEST_LIMIT:?}").into())
    })
}

/// Whether CI asked for every service: then a missing one fails its tests.
pub fn required() -> bool {
    std::env::var("TOWER_IDEMPOTENCY_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A server (or program) some tests need, looked for once.
#[derive(Debug)]
pub struct Service {
    /// Why it is missing, or `None` when it is there.
    missing: Option<String>,
}

impl Service {
    /// A server at `url` (`scheme://[user@]host[:port][/...]`), there if a
    /// TCP connection to it opens within half a second.
    pub fn server(what: &str, url: &str, default_port: u16) -> Self {
        let authority = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let address = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        };
        let reachable = address
            .to_socket_addrs()
            .map_err(|error| error.to_string())
            .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_owned()))
            .and_then(|addr| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .map_err(|error| error.to_string())
            });
        Self {
            missing: reachable
                .err()
                .map(|error| format!("no {what} at {url} ({error})")),
        }
    }

    /// A program on the PATH, there if it starts (`program --version`,
    /// whatever it answers: `openssl` knows no `--version` and says so).
    pub fn program(program: &str) -> Self {
        let ran = std::process::Command::new(program)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        Self {
            missing: ran
                .err()
                .map(|error| format!("no `{program}` on the PATH ({error})")),
        }
    }

    /// Programs on the PATH, there if each starts.
    pub fn programs(programs: &[&str]) -> Self {
        Self {
            missing: programs
                .iter()
                .find_map(|program| Self::program(program).missing),
        }
    }

    /// `trials` as they are when the service is there or required; marked
    /// ignored otherwise, with one line saying why.
    pub fn gate(&self, trials: Vec<Trial>) -> Vec<Trial> {
        match &self.missing {
            Some(why) if !required() => {
                eprintln!(
                    "stores: {why}: {} tests marked ignored (set TOWER_IDEMPOTENCY_REQUIRE_SERVICES=1 to run and fail them)",
                    trials.len()
                );
                trials
                    .into_iter()
                    .map(|trial| trial.with_ignored_flag(true))
                    .collect()
            }
            _ => trials,
        }
    }
}

/// Whether any trial whose name contains `part` will run: not ignored, and
/// not filtered out by the command line.
pub fn wanted(args: &libtest_mimic::Arguments, trials: &[Trial], part: &str) -> bool {
    trials.iter().any(|trial| {
        trial.name().contains(part)
            && !trial.has_ignored_flag()
            && args.filter.as_ref().is_none_or(|filter| {
                if args.exact {
                    trial.name() == filter
                } else {
                    trial.name().contains(filter.as_str())
                }
            })
            && args
                .skip
                .iter()
                .all(|skip| !trial.name().contains(skip.as_str()))
    })
}

/// One trial per named async test function: `trials![module; Flavor name, ...]`.
macro_rules! trials {
    ($module:literal; $($flavor:expr => $name:ident),* $(,)?) => {
        vec![$(
            $crate::harness::trial(
                concat!($module, "::", stringify!($name)),
                $flavor,
                $name,
            )
        ),*]
    };
}
pub(crate) use trials;
