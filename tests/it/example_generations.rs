//! Black-box tests of `examples/generations.rs` on the memory store: the
//! built example runs as a process, and clients stream its server-sent
//! events over real HTTP. (Two instances sharing Redis are in the `stores`
//! binary.)

use crate::common::example::{http, start_example};
use crate::common::sse::{End, assert_whole, generation_of, index_of, post_generation};

const ASK: &str = r#"{"prompt":"a pot of tea","tokens":20,"interval_ms":100}"#;

#[tokio::test]
async fn a_retry_after_a_disconnect_gets_every_event_from_the_first_live() {
    let server = start_example("generations", &[]).await;
    let mut a = post_generation(&server.addr, "g1", ASK).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    for i in 0..5 {
        assert_eq!(index_of(&a.next_event().await.unwrap()), Some(i));
    }
    drop(a);
    let mut b = post_generation(&server.addr, "g1", ASK).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    assert_eq!(b.header("content-type"), Some("text/event-stream"));
    // B joined while the generation still ran: live, not a replay at the end.
    let first = b.next_event().await.unwrap();
    let listed = http(&server, "GET", "/v1/generations", &[], "")
        .await
        .json();
    assert_eq!(listed[0]["status"], "running", "{listed}");
    let (mut events, end) = b.rest().await;
    events.insert(0, first);
    assert_eq!(end, End::Clean);
    assert_whole(&events, 1);
    // A replay after the end is byte for byte what B got.
    let mut c = post_generation(&server.addr, "g1", ASK).await;
    let (_, end) = c.rest().await;
    assert_eq!(end, End::Clean);
    assert_eq!(c.raw, b.raw);
    let listed = http(&server, "GET", "/v1/generations", &[], "")
        .await
        .json();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "one generation: {listed}"
    );
    assert_eq!(listed[0]["status"], "completed");
    assert_eq!(listed[0]["request"]["prompt"], "a pot of tea");
}

#[tokio::test]
async fn two_clients_connected_together_get_identical_bodies() {
    let server = start_example("generations", &[]).await;
    let mut a = post_generation(&server.addr, "g1", ASK).await;
    a.next_event().await.unwrap();
    let mut b = post_generation(&server.addr, "g1", ASK).await;
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    let (a_end, b_end) = tokio::join!(a.rest(), b.rest());
    assert_eq!((a_end.1, b_end.1), (End::Clean, End::Clean));
    assert_eq!(a.raw, b.raw, "byte-identical bodies");
    let mut events = vec![];
    let mut whole = b.raw.clone();
    while let Some(at) = whole.windows(2).position(|w| w == b"\n\n") {
        let event = whole.split_to(at + 2);
        events.push(
            String::from_utf8(event.to_vec()).unwrap().trim_end()["data: ".len()..].to_owned(),
        );
    }
    assert_whole(&events, 1);
    let listed = http(&server, "GET", "/v1/generations", &[], "")
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_generation_cuts_both_clients_and_the_retry_starts_another() {
    let server = start_example("generations", &[]).await;
    let ask = r#"{"prompt":"tea","tokens":20,"interval_ms":50,"fail_at":5}"#;
    let mut a = post_generation(&server.addr, "g1", ask).await;
    a.next_event().await.unwrap();
    let mut b = post_generation(&server.addr, "g1", ask).await;
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    let ((a_events, a_end), (b_events, b_end)) = tokio::join!(a.rest(), b.rest());
    assert_eq!(a_end, End::Cut, "the original's client sees the cut");
    assert_eq!(b_end, End::Cut, "so does the joiner: never a clean end");
    // Each saw consecutive events and no `[DONE]` (hyper may cut before it
    // flushed the last event written ahead of the error).
    for (events, first) in [(&a_events, 1), (&b_events, 0)] {
        assert!(events.len() + first <= 5, "{events:?}");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(index_of(event), Some((i + first) as u64), "{events:?}");
        }
    }
    // The claim was released: the next retry runs generation 2.
    let mut c = post_generation(&server.addr, "g1", ask).await;
    assert_eq!(c.header("idempotent-replayed"), None);
    let first = c.next_event().await.unwrap();
    assert_eq!(generation_of(&first), Some(2));
    let listed = http(&server, "GET", "/v1/generations", &[], "")
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["status"], "failed");
}
