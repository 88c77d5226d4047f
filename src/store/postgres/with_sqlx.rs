//! Completing a [`PostgresClaim`] in an `sqlx` transaction.

use bytes::Bytes;
use http::Response;

use super::{CompletionError, PostgresClaim};

impl PostgresClaim {
    /// Completes the record with `response`, in the transaction `connection`
    /// runs (`&mut transaction` for an `sqlx::Transaction<'_, Postgres>`):
    /// one statement, prepared once per connection, fenced by this claim's
    /// token.
    ///
    /// On `Ok`, commit, then send `response`. On `Err`, roll back: the claim
    /// is no longer this request's ([`CompletionError::Fenced`]), or the
    /// transaction must run again
    /// ([`CompletionError::SerializationFailure`]).
    ///
    /// A payments endpoint with axum:
    ///
    /// ```no_run
    /// use axum::extract::State;
    /// use axum::http::StatusCode;
    /// use axum::response::{IntoResponse, Response};
    /// use axum::routing::post;
    /// use axum::{Extension, Json, Router};
    /// use bytes::Bytes;
    /// use sqlx::PgPool;
    /// use tower_idempotency::IdempotencyLayer;
    /// use tower_idempotency::store::{CompletionError, PostgresClaim, PostgresStore};
    ///
    /// async fn create_payment(
    ///     State(db): State<PgPool>,
    ///     Extension(claim): Extension<PostgresClaim>,
    ///     Json(payment): Json<serde_json::Value>,
    /// ) -> Result<Response, Failed> {
    ///     let mut transaction = db.begin().await?;
    ///     let id: i64 = sqlx::query_scalar("INSERT INTO payments (payment) VALUES ($1) RETURNING id")
    ///         .bind(payment.to_string())
    ///         .fetch_one(&mut *transaction)
    ///         .await?;
    ///     let body = serde_json::json!({ "id": id, "payment": payment }).to_string();
    ///     let response = http::Response::builder()
    ///         .status(StatusCode::CREATED)
    ///         .header("content-type", "application/json")
    ///         .body(Bytes::from(body))
    ///         .map_err(|_| Failed)?;
    ///     // If the key is no longer this request's, `?` drops the
    ///     // transaction, which rolls it back: the payment never commits.
    ///     claim.complete_sqlx(&mut transaction, &response).await?;
    ///     transaction.commit().await?;
    ///     Ok(response.map(axum::body::Body::from))
    /// }
    ///
    /// /// Nothing committed: a 503, which the layer does not record, so a
    /// /// retry runs again (or replays the owner's answer).
    /// struct Failed;
    ///
    /// impl From<sqlx::Error> for Failed {
    ///     fn from(_: sqlx::Error) -> Self {
    ///         Failed
    ///     }
    /// }
    ///
    /// impl From<CompletionError> for Failed {
    ///     fn from(_: CompletionError) -> Self {
    ///         Failed
    ///     }
    /// }
    ///
    /// impl IntoResponse for Failed {
    ///     fn into_response(self) -> Response {
    ///         StatusCode::SERVICE_UNAVAILABLE.into_response()
    ///     }
    /// }
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "postgres://postgres@127.0.0.1:5432/app";
    /// let db = PgPool::connect(url).await?;
    /// let store = PostgresStore::connect(url).await?;
    /// store.migrate().await?;
    /// let app: Router = Router::new()
    ///     .route("/payments", post(create_payment))
    ///     .with_state(db)
    ///     .layer(IdempotencyLayer::new(store));
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
    pub async fn complete_sqlx(
        &self,
        connection: &mut sqlx::PgConnection,
        response: &Response<Bytes>,
    ) -> Result<(), CompletionError> {
        let values = self.completion(response);
        let done = sqlx::query(self.statement())
            .bind(&values.key[..])
            .bind(values.token)
            .bind(values.status)
            .bind(values.headers.as_deref())
            .bind(values.body.as_deref())
            .bind(values.ttl_ms)
            .execute(connection)
            .await
            .map_err(|error| {
                let sqlstate = match &error {
                    sqlx::Error::Database(database) => {
                        database.code().map(|code| code.into_owned())
                    }
                    _ => None,
                };
                CompletionError::from_database(sqlstate.as_deref(), Box::new(error))
            })?;
        self.completed(done.rows_affected())
    }
}
