//! A store that times every record operation into the metrics.

use std::sync::Arc;

use super::{Kind, Store, StoreError, Written};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::quota::QuotaStore;

/// Wraps the configured store; quota and event operations pass through
/// untimed (their callers measure what matters to them).
#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Timed {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait::async_trait]
impl Store for Timed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn quotas(&self) -> &dyn QuotaStore {
        self.inner.quotas()
    }

    fn events(&self) -> &dyn EventLog {
        self.inner.events()
    }

    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError> {
        self.metrics.time_store(self.backend(), "put", self.inner.put(kind, key, value)).await
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.metrics.time_store(self.backend(), "get", self.inner.get(kind, key)).await
    }

    async fn get_many(&self, items: &[(Kind, &str)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.metrics.time_store(self.backend(), "get_many", self.inner.get_many(items)).await
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, StoreError> {
        self.metrics.time_store(self.backend(), "delete", self.inner.delete(kind, key)).await
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.metrics.time_store(self.backend(), "list", self.inner.list(kind, prefix, after, limit)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.metrics.time_store(self.backend(), "ping", self.inner.ping()).await
    }
}
