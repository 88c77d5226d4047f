//! Joining a response in flight: a retry that finds its key in flight, with
//! the response already streaming, gets that same response (status, headers
//! and every byte of the body, as produced) instead of a 409.
//!
//! The parts: the [`JoinBoard`] where joiners and responses meet, the
//! [`Live`](live::Live) copy a response feeds and its joiners share, the
//! joiner's [`JoinedBody`], and the [`JoinInterrupted`] error that ends it
//! when the original breaks off. Across replicas, with a store that has a
//! relay, the producing replica [`forward`]s its live copy to the store and
//! a joiner elsewhere reads it back as a [`RelayedBody`]. A response nobody
//! joins never meets any of them beyond a look at a counter or two per
//! chunk.

mod board;
mod interrupted;
mod joined_body;
mod live;
mod relayed;

pub(crate) use self::board::{Feed, JoinBoard, Watcher};
pub use self::interrupted::JoinInterrupted;
pub(crate) use self::joined_body::JoinedBody;
pub(crate) use self::live::{HeadState, LiveHead, Progress};
pub(crate) use self::relayed::{
    Producer, RelayedBody, RelayedHead, RelayedResponse, forward, relayed_head,
};
