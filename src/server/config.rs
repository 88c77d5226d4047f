//! [`Config`]: everything an [`IdempotencyLayer`](super::IdempotencyLayer) was
//! told, and [`Shared`]: the configuration and the store, shared by every
//! request of a layer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use super::decision::DecisionConfig;
use super::join::JoinBoard;
use super::outcome::OutcomeHook;
use super::request::{FingerprintConfig, GlobalScope, SharedScopeFn};
use super::response::{Rejection, RejectionFormat, default_record_policy};
use crate::IDEMPOTENCY_KEY;
use crate::method_set::MethodSet;
use crate::store::timeout::{Within, within};

/// Everything the layer was told, shared by the services it makes.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) methods: MethodSet,
    pub(crate) header: HeaderName,
    pub(crate) require_key: bool,
    pub(crate) scope: SharedScopeFn,
    pub(crate) fingerprint: FingerprintConfig,
    pub(crate) request_body_limit: usize,
    pub(crate) response_record_limit: usize,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) record_policy: Arc<dyn Fn(StatusCode) -> bool + Send + Sync>,
    pub(crate) decision: DecisionConfig,
    pub(crate) wait_in_flight: Option<Duration>,
    /// Joining on: where this layer's joiners and responses meet.
    pub(crate) joins: Option<Arc<JoinBoard>>,
    pub(crate) run_to_completion: bool,
    pub(crate) on_outcome: Option<OutcomeHook>,
    pub(crate) rejections: RejectionFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            methods: [Method::POST, Method::PATCH].into_iter().collect(),
            header: IDEMPOTENCY_KEY,
            require_key: false,
            scope: Arc::new(GlobalScope),
            fingerprint: FingerprintConfig::default(),
            request_body_limit: 1024 * 1024,
            response_record_limit: 1024 * 1024,
            ttl: Duration::from_secs(24 * 60 * 60),
            lease: Duration::from_secs(30),
            store_timeout: Duration::from_secs(2),
            record_policy: Arc::new(default_record_policy),
            decision: DecisionConfig {
                retry_after: Duration::from_secs(1),
                fail_open: false,
                mismatch: Rejection::PayloadMismatch,
            },
            wait_in_flight: None,
            joins: None,
            run_to_completion: true,
            on_outcome: None,
            rejections: RejectionFormat::default(),
        }
    }
}

impl Config {
    pub(crate) fn covers(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("methods", &self.methods)
            .field("header", &self.header)
            .field("require_key", &self.require_key)
            .field("fingerprint", &self.fingerprint)
            .field("request_body_limit", &self.request_body_limit)
            .field("response_record_limit", &self.response_record_limit)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .field("store_timeout", &self.store_timeout)
            .field("decision", &self.decision)
            .field("wait_in_flight", &self.wait_in_flight)
            .field("join_in_flight", &self.joins.is_some())
            .field("run_to_completion", &self.run_to_completion)
            .finish_non_exhaustive()
    }
}

/// What a layer's services share: the configuration and the store.
#[derive(Debug)]
pub(crate) struct Shared<St> {
    pub(crate) config: Config,
    pub(crate) store: Arc<St>,
}

impl<St> Shared<St> {
    /// Runs one store call, bounded by the store timeout.
    pub(crate) fn bounded<F>(&self, call: F) -> Within<F> {
        within(self.config.store_timeout, call)
    }
}
