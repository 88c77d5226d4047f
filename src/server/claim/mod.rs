//! A claim's life: asking the store for the key, the lease kept alive while
//! the work runs, and the work itself under the claim, which ends in a
//! record or a release however the request ends.

mod acquire;
mod execution;
mod held;
mod lease;

pub(crate) use self::acquire::{Acquired, acquire};
pub(crate) use self::execution::{Run, execute};
pub(crate) use self::held::Claim;
