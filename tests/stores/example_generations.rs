//! The generations example, two instances sharing one Redis or one Redis
//! Cluster: a retry on the other instance joins the generation as it
//! streams, through the store's relay.
#![cfg(feature = "redis")]

use libtest_mimic::Trial;

use crate::common::example::{Server, http, start_example};
use crate::common::sse::{End, assert_whole, generation_of, index_of, post_generation};
use crate::harness::{Flavor, trials};

const ASK: &str = r#"{"prompt":"a pot of tea","tokens":20,"interval_ms":100}"#;

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Two instances on one store: `REDIS_URL` or the shared cluster.
async fn two_instances(cluster: bool, extra: &[(&str, &str)]) -> (Server, Server) {
    let prefix = format!("tower-idempotency-test:generations:{}:", nanos());
    let (name, url) = if cluster {
        (
            "REDIS_CLUSTER_URLS",
            crate::redis_cluster::shared_urls().join(","),
        )
    } else {
        ("REDIS_URL", crate::redis_store::redis_url())
    };
    let mut env = vec![(name, url.as_str()), ("KEY_PREFIX", prefix.as_str())];
    env.extend_from_slice(extra);
    (
        start_example("generations", &env).await,
        start_example("generations", &env).await,
    )
}

async fn generations(server: &Server) -> Vec<serde_json::Value> {
    let listed = http(server, "GET", "/v1/generations", &[], "").await.json();
    listed.as_array().unwrap().clone()
}

/// A reads 5 events from one instance and disconnects; B retries on the
/// other at once and gets every event from index 0, live, byte for byte
/// what a replay gives after the end; the generation ran once.
async fn a_retry_on_the_other_instance_joins_live(cluster: bool) {
    let (one, two) = two_instances(cluster, &[]).await;
    let mut a = post_generation(&one.addr, "g1", ASK).await;
    for i in 0..5 {
        assert_eq!(index_of(&a.next_event().await.unwrap()), Some(i));
    }
    drop(a);
    let mut b = post_generation(&two.addr, "g1", ASK).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    assert_eq!(b.header("content-type"), Some("text/event-stream"));
    let first = b.next_event().await.unwrap();
    // Joined while the generation still ran on the first instance.
    assert_eq!(generations(&one).await[0]["status"], "running");
    let (mut events, end) = b.rest().await;
    events.insert(0, first);
    assert_eq!(end, End::Clean);
    assert_whole(&events, 1);
    let mut c = post_generation(&two.addr, "g1", ASK).await;
    assert_eq!(c.rest().await.1, End::Clean);
    assert_eq!(c.raw, b.raw, "a replay after the end is what B got");
    assert_eq!(generations(&one).await.len(), 1);
    assert!(generations(&two).await.is_empty(), "one generation in all");
}

async fn on_redis_a_retry_on_the_other_instance_joins_live() {
    a_retry_on_the_other_instance_joins_live(false).await;
}

async fn on_a_redis_cluster_a_retry_on_the_other_instance_joins_live() {
    a_retry_on_the_other_instance_joins_live(true).await;
}

/// A on one instance and B on the other, connected together: identical
/// bodies.
async fn clients_on_both_instances_get_identical_bodies() {
    let (one, two) = two_instances(false, &[]).await;
    let mut a = post_generation(&one.addr, "g1", ASK).await;
    a.next_event().await.unwrap();
    let mut b = post_generation(&two.addr, "g1", ASK).await;
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    let (a_end, b_end) = tokio::join!(a.rest(), b.rest());
    assert_eq!((a_end.1, b_end.1), (End::Clean, End::Clean));
    assert_eq!(a.raw, b.raw);
    assert_eq!(
        generations(&one).await.len() + generations(&two).await.len(),
        1
    );
}

/// `fail_at`: the original's client and the joiner on the other instance
/// both see the cut; the next retry starts generation 2.
async fn a_failing_generation_cuts_the_joiner_on_the_other_instance() {
    let (one, two) = two_instances(false, &[]).await;
    let ask = r#"{"prompt":"tea","tokens":20,"interval_ms":50,"fail_at":5}"#;
    let mut a = post_generation(&one.addr, "g1", ask).await;
    a.next_event().await.unwrap();
    let mut b = post_generation(&two.addr, "g1", ask).await;
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    let ((_, a_end), (b_events, b_end)) = tokio::join!(a.rest(), b.rest());
    assert_eq!(a_end, End::Cut);
    assert_eq!(b_end, End::Cut, "never a clean end: {b_events:?}");
    assert!(b_events.len() <= 5 && !b_events.iter().any(|e| e == "[DONE]"));
    for (i, event) in b_events.iter().enumerate() {
        assert_eq!(index_of(event), Some(i as u64));
    }
    let mut c = post_generation(&one.addr, "g1", ask).await;
    assert_eq!(c.header("idempotent-replayed"), None);
    assert_eq!(generation_of(&c.next_event().await.unwrap()), Some(2));
}

/// The instance producing the generation is killed: the joiner on the
/// other instance is cut within a lease, and the next retry runs there.
async fn a_killed_producer_cuts_the_joiner_on_the_other_instance() {
    let (one, two) = two_instances(false, &[("LEASE_SECS", "2")]).await;
    let ask = r#"{"prompt":"tea","tokens":200,"interval_ms":50}"#;
    let mut a = post_generation(&one.addr, "g1", ask).await;
    a.next_event().await.unwrap();
    let mut b = post_generation(&two.addr, "g1", ask).await;
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    b.next_event().await.unwrap();
    one.signal("KILL");
    let started = std::time::Instant::now();
    let (events, end) = b.rest().await;
    assert_eq!(end, End::Cut, "{} events, then a clean end", events.len());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!events.iter().any(|e| e == "[DONE]"));
    // The claim lapses with its lease; the retry then runs on the survivor.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut c = post_generation(&two.addr, "g1", ask).await;
        if c.status == 200 && c.header("idempotent-replayed").is_none() {
            assert_eq!(generation_of(&c.next_event().await.unwrap()), Some(1));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The example with Redis.
pub fn redis_trials() -> Vec<Trial> {
    trials!["example_generations";
        Flavor::MultiThread(2) => on_redis_a_retry_on_the_other_instance_joins_live,
        Flavor::MultiThread(2) => clients_on_both_instances_get_identical_bodies,
        Flavor::MultiThread(2) => a_failing_generation_cuts_the_joiner_on_the_other_instance,
        Flavor::MultiThread(2) => a_killed_producer_cuts_the_joiner_on_the_other_instance,
    ]
}

/// The example on the shared Redis Cluster.
pub fn redis_cluster_trials() -> Vec<Trial> {
    trials!["example_generations";
        Flavor::MultiThread(2) => on_a_redis_cluster_a_retry_on_the_other_instance_joins_live,
    ]
}
