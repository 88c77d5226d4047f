//! What the layer answers: the body that streams the service's response
//! while recording it, the rules of what is recorded, replays, and the
//! layer's own rejections as problem documents.

mod body;
mod recording;
mod rejection;
mod replay;

pub use self::body::ResponseBody;
pub(crate) use self::body::{FinishRecording, Recording};
pub use self::recording::default_record_policy;
pub(crate) use self::rejection::{Rejection, RejectionFormat, rejection_response};
pub(crate) use self::replay::{joined, relayed, replay};
