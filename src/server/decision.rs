//! The decision table: what the store's answer to a claim means for a
//! request.

use std::time::Duration;

use super::response::Rejection;
use crate::log::warn_store_error;
use crate::store::{ClaimOutcome, FencingToken, Fingerprint, RecordedResponse, StoreError};

/// What to do with a protected request once the store has answered its claim.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// The key is ours: run the service and record its response.
    Run(FencingToken),
    /// Send the recorded response again.
    Replay(RecordedResponse),
    /// Answer with a problem document.
    Reject(Rejection),
    /// The store failed and the layer fails open: run the service unprotected.
    RunUnprotected,
}

/// How the layer is set to answer what the store says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecisionConfig {
    pub(crate) retry_after: Duration,
    pub(crate) fail_open: bool,
    /// The answer to a payload mismatch, by profile.
    pub(crate) mismatch: Rejection,
}

impl DecisionConfig {
    /// Decides for a request with `fingerprint` given the claim's outcome.
    pub(crate) fn decide(
        self,
        claim: Result<ClaimOutcome, StoreError>,
        fingerprint: &Fingerprint,
    ) -> Decision {
        match claim {
            Ok(ClaimOutcome::Claimed(token)) => Decision::Run(token),
            Ok(ClaimOutcome::InFlight {
                fingerprint: theirs,
            }) if theirs == *fingerprint => Decision::Reject(Rejection::InProgress {
                retry_after: self.retry_after,
            }),
            Ok(ClaimOutcome::InFlight { .. }) => Decision::Reject(self.mismatch),
            Ok(ClaimOutcome::Completed(record)) if record.fingerprint != *fingerprint => {
                Decision::Reject(self.mismatch)
            }
            Ok(ClaimOutcome::Completed(record)) => match record.response {
                Some(response) => Decision::Replay(response),
                None => Decision::Reject(Rejection::NotReplayable),
            },
            Err(error) => {
                warn_store_error!(error, "idempotency store failed to claim a key");
                if self.fail_open {
                    Decision::RunUnprotected
                } else {
                    Decision::Reject(Rejection::StoreUnavailable)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, StoreErrorKind};
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    const MINE: Fingerprint = Fingerprint::from_bytes([1; 32]);
    const OTHER: Fingerprint = Fingerprint::from_bytes([2; 32]);
    const CONFIG: DecisionConfig = DecisionConfig {
        retry_after: Duration::from_secs(1),
        fail_open: false,
        mismatch: Rejection::PayloadMismatch,
    };

    fn completed(fingerprint: Fingerprint, replayable: bool) -> ClaimOutcome {
        ClaimOutcome::Completed(Record {
            fingerprint,
            response: replayable.then(|| RecordedResponse {
                status: StatusCode::CREATED,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"{}"),
            }),
        })
    }

    #[test]
    fn every_row_of_the_table() {
        let token = FencingToken::new(7);
        let in_progress = Rejection::InProgress {
            retry_after: Duration::from_secs(1),
        };
        let rows = [
            (Ok(ClaimOutcome::Claimed(token)), Decision::Run(token)),
            (
                Ok(ClaimOutcome::InFlight { fingerprint: MINE }),
                Decision::Reject(in_progress),
            ),
            (
                Ok(ClaimOutcome::InFlight { fingerprint: OTHER }),
                Decision::Reject(Rejection::PayloadMismatch),
            ),
            (
                Ok(completed(OTHER, true)),
                Decision::Reject(Rejection::PayloadMismatch),
            ),
            (
                Ok(completed(OTHER, false)),
                Decision::Reject(Rejection::PayloadMismatch),
            ),
            (
                Ok(completed(MINE, false)),
                Decision::Reject(Rejection::NotReplayable),
            ),
            (
                Err(StoreErrorKind::Timeout.into()),
                Decision::Reject(Rejection::StoreUnavailable),
            ),
        ];
        for (claim, expected) in rows {
            assert_eq!(CONFIG.decide(claim, &MINE), expected);
        }
        assert!(matches!(
            CONFIG.decide(Ok(completed(MINE, true)), &MINE),
            Decision::Replay(response) if response.status == StatusCode::CREATED
        ));
    }

    #[test]
    fn fail_open_runs_unprotected() {
        let config = DecisionConfig {
            fail_open: true,
            ..CONFIG
        };
        let error = StoreError::new(StoreErrorKind::Unavailable);
        assert_eq!(config.decide(Err(error), &MINE), Decision::RunUnprotected);
    }
}
