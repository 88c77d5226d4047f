//! Completing a [`PostgresClaim`] in a `tokio-postgres` transaction.

use bytes::Bytes;
use http::Response;
use tokio_postgres::GenericClient;
use tokio_postgres::types::{ToSql, Type};

use super::{CompletionError, PostgresClaim};

impl PostgresClaim {
    /// Completes the record with `response`, in the transaction `client`
    /// runs (a [`tokio_postgres::Transaction`]; with `deadpool-postgres`,
    /// `&*transaction`): one statement, one round trip, fenced by this
    /// claim's token.
    ///
    /// On `Ok`, commit, then send `response`. On `Err`, roll back: the claim
    /// is no longer this request's ([`CompletionError::Fenced`]), or the
    /// transaction must run again
    /// ([`CompletionError::SerializationFailure`]).
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use tower_idempotency::store::{CompletionError, PostgresClaim};
    ///
    /// async fn pay(
    ///     client: &mut tokio_postgres::Client,
    ///     claim: &PostgresClaim,
    /// ) -> Result<http::Response<Bytes>, Box<dyn std::error::Error>> {
    ///     let transaction = client.transaction().await?;
    ///     let row = transaction
    ///         .query_one("INSERT INTO payments (amount) VALUES (100) RETURNING id", &[])
    ///         .await?;
    ///     let id: i64 = row.get(0);
    ///     let response = http::Response::builder()
    ///         .status(201)
    ///         .header("content-type", "application/json")
    ///         .body(Bytes::from(format!(r#"{{"id":{id}}}"#)))?;
    ///     // Dropping the transaction on `?` rolls it back: no payment commits.
    ///     claim.complete_tokio_postgres(&transaction, &response).await?;
    ///     transaction.commit().await?;
    ///     Ok(response)
    /// }
    /// ```
    pub async fn complete_tokio_postgres<C>(
        &self,
        client: &C,
        response: &Response<Bytes>,
    ) -> Result<(), CompletionError>
    where
        C: GenericClient + Sync + ?Sized,
    {
        let values = self.completion(response);
        let key = &values.key[..];
        let body = values.body.as_deref();
        let params: [(&(dyn ToSql + Sync), Type); 6] = [
            (&key, Type::BYTEA),
            (&values.token, Type::INT8),
            (&values.status, Type::INT2),
            (&values.headers, Type::BYTEA),
            (&body, Type::BYTEA),
            (&values.ttl_ms, Type::INT8),
        ];
        let rows = client
            .execute_typed(self.statement(), &params)
            .await
            .map_err(|error| {
                let sqlstate = error.code().map(|code| code.code().to_owned());
                CompletionError::from_database(sqlstate.as_deref(), Box::new(error))
            })?;
        self.completed(rows)
    }
}
