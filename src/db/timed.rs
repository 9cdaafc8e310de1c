//! A record store that times every operation into the metrics.

use std::sync::Arc;

use crate::catalog::store::{CasOutcome, Expect, Kind, RecordStore, StoreError, Versioned, Written};
use crate::metrics::Metrics;

/// Wraps the configured engine's record store.
#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn RecordStore>,
    metrics: Arc<Metrics>,
}

impl Timed {
    pub fn new(inner: Arc<dyn RecordStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait::async_trait]
impl RecordStore for Timed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError> {
        self.metrics.time_store(self.backend(), "put", self.inner.put(kind, key, value)).await
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.metrics.time_store(self.backend(), "get", self.inner.get(kind, key)).await
    }

    async fn get_versioned(&self, kind: Kind, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.metrics.time_store(self.backend(), "get", self.inner.get_versioned(kind, key)).await
    }

    async fn put_if(&self, kind: Kind, key: &str, value: &[u8], expect: Expect) -> Result<CasOutcome, StoreError> {
        self.metrics.time_store(self.backend(), "put_if", self.inner.put_if(kind, key, value, expect)).await
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
