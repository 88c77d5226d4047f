//! [`PostgresClaim`]: the claim a handler completes inside its own database
//! transaction, and the [`CompletionError`] that tells it to roll back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;

use super::{millis, row_values};
use crate::store::{
    ClaimLoan, CompletionFlag, FencingToken, KeyDigest, RecordedResponse, recordable_headers,
};

/// The request's claim on its idempotency key, lent by [`PostgresStore`] to
/// the handler through the request's extensions, so that the handler can
/// complete the record **in its own transaction**: the payment row and the
/// response that reports it commit together, or neither does.
///
/// # What it closes
///
/// The layer runs a key once and its fencing token keeps a late finisher from
/// overwriting a newer record. Two gaps remain between that and "the payment
/// is made once", and completing in the transaction closes both:
///
/// - **A stale owner.** A replica frozen past its lease (a long GC pause, a
///   stalled VM) wakes up after another replica took the key over and made the
///   payment. Its completion finds the key no longer its own and fails with
///   [`CompletionError::Fenced`]; the handler rolls back, and its payment never
///   commits.
/// - **A crash after the commit.** Once the transaction commits, the record is
///   durable with the effect: a process killed a moment later leaves a key
///   whose retries replay, never one whose retry pays again.
///
/// # The fence
///
/// The completion is one `UPDATE` of the key's row that writes the response
/// (status, the headers a replay sends, body) only while the row is an
/// in-flight claim held under this request's token whose lease has not
/// lapsed. The lease is compared with `clock_timestamp()`, the database's
/// clock when the statement runs, not `now()`, which is the start of the
/// transaction: a transaction that began before its lease lapsed cannot slip
/// through after. From the statement on, the transaction holds the row's
/// lock, so no other replica can take the key over until it commits (then
/// the record stands) or rolls back (then the claim is as it was).
///
/// Under `READ COMMITTED` (PostgreSQL's default) a takeover is seen as it
/// is. Under `REPEATABLE READ` and `SERIALIZABLE` a row changed since the
/// transaction's snapshot (a takeover, or this claim's own lease renewal
/// when the transaction outlasts a third of the lease) fails the statement
/// with a serialization failure, [`CompletionError::SerializationFailure`]:
/// run the whole transaction again, as for any serialization failure. A
/// retried transaction whose key was taken over then fails
/// [`Fenced`](CompletionError::Fenced). Either way no effect commits twice.
///
/// # Using it
///
/// Take it from the extensions (with axum, `Extension<PostgresClaim>`), do
/// the work in a transaction, complete with the response you will send, then
/// commit and send that response:
///
/// - with `tokio-postgres` (feature `postgres`):
///   [`complete_tokio_postgres`](Self::complete_tokio_postgres);
/// - with `sqlx` (feature `sqlx`): `complete_sqlx`.
///
/// The layer then sends the response as it is and records nothing more. If
/// the handler answers with a status the layer does not record (an error, a
/// 5xx: say, the commit failed), the layer releases the key, so a retry runs
/// again. A handler that completes and then rolls back must answer so; a
/// recordable answer after a rollback leaves the key in flight until its
/// lease lapses (the layer stops renewing it at the completion), and then a
/// retry runs again.
///
/// What is recorded follows the layer's rules: hop-by-hop and credential
/// headers are left out, and a body over the layer's recording limit leaves
/// a tombstone (retries get 409 `idempotency_response_not_replayable`). The
/// layer's recording policy is not asked: a response you complete with is
/// recorded whatever its status, because your effect committed with it.
/// A handler that does not use its claim gets the layer's usual behaviour.
///
/// [`PostgresStore`]: super::PostgresStore
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone)]
pub struct PostgresClaim {
    key: KeyDigest,
    token: FencingToken,
    ttl: Duration,
    record_limit: usize,
    statement: Arc<str>,
    completion: CompletionFlag,
}

/// The values of one completion statement, in parameter order after the key
/// and the token: status, headers, body, TTL in milliseconds.
pub(super) struct Completion {
    pub(super) key: [u8; 32],
    pub(super) token: i64,
    pub(super) status: Option<i16>,
    pub(super) headers: Option<Vec<u8>>,
    pub(super) body: Option<Bytes>,
    pub(super) ttl_ms: i64,
}

impl PostgresClaim {
    pub(super) fn new(mut loan: ClaimLoan<'_>, statement: Arc<str>) -> Self {
        Self {
            key: *loan.key(),
            token: loan.token(),
            ttl: loan.ttl(),
            record_limit: loan.response_record_limit(),
            statement,
            completion: loan.completion_flag(),
        }
    }

    /// The claim's fencing token.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Tells whether a completion statement of this claim succeeded (its
    /// transaction may not have committed yet).
    pub fn is_completed(&self) -> bool {
        self.completion.is_set()
    }

    /// The statement, written for the store's table.
    pub(super) fn statement(&self) -> &str {
        &self.statement
    }

    /// The statement's values for `response`, as the layer would record it.
    pub(super) fn completion(&self, response: &Response<Bytes>) -> Completion {
        let recorded = (response.body().len() <= self.record_limit).then(|| RecordedResponse {
            status: response.status(),
            headers: recordable_headers(response.headers()),
            body: response.body().clone(),
        });
        let (status, headers, _) = row_values(recorded.as_ref());
        Completion {
            key: *self.key.as_bytes(),
            token: self.token.get() as i64,
            status,
            headers,
            body: recorded.map(|recorded| recorded.body),
            ttl_ms: millis(self.ttl),
        }
    }

    /// Takes the answer of a completion statement: one row written, or the
    /// claim is no longer this request's.
    pub(super) fn completed(&self, rows: u64) -> Result<(), CompletionError> {
        if rows == 1 {
            self.completion.set();
            Ok(())
        } else {
            Err(CompletionError::Fenced)
        }
    }
}

impl std::fmt::Debug for PostgresClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresClaim")
            .field("key", &format_args!("{:x}", self.key))
            .field("token", &self.token)
            .field("completed", &self.is_completed())
            .finish_non_exhaustive()
    }
}

/// Why a [`PostgresClaim`] could not be completed. Every case means: roll the
/// transaction back; its effect must not commit.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompletionError {
    /// The claim is no longer this request's: its lease lapsed, or the key
    /// passed to another owner (who may have completed it), or it was
    /// completed already. Roll back and answer with an error (a 5xx): the
    /// key's owner answers the client's retries.
    #[error(
        "the idempotency claim is no longer this request's (its lease lapsed or \
         it passed to another owner): roll the transaction back"
    )]
    Fenced,
    /// The database could not serialize the transaction (SQLSTATE 40001) or
    /// broke a deadlock (40P01). Roll back and run the whole transaction
    /// again.
    #[error("the transaction must be retried: {0}")]
    SerializationFailure(#[source] BoxError),
    /// The statement failed for another reason (the connection broke, the
    /// transaction had already failed). Roll back.
    #[error("the idempotency record could not be completed: {0}")]
    Database(#[source] BoxError),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl CompletionError {
    /// Tells whether running the whole transaction again may succeed: true
    /// for a serialization failure or a broken deadlock.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::SerializationFailure(_))
    }

    /// Tells whether the claim is no longer this request's.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced)
    }

    /// A failed statement, sorted by its SQLSTATE.
    pub(super) fn from_database(sqlstate: Option<&str>, error: BoxError) -> Self {
        match sqlstate {
            Some("40001" | "40P01") => Self::SerializationFailure(error),
            _ => Self::Database(error),
        }
    }
}
