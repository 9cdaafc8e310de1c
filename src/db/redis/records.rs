//! Records on Redis: a string per record and a sorted set per kind for
//! ordered listing (layout in [`super`]).

use redis::AsyncCommands as _;

use super::{Conn, RedisDb, store_error};
use crate::catalog::store::{Kind, MAX_PAGE, RecordStore, StoreError, Written, check_key};

impl RedisDb {
    fn record_key(&self, kind: Kind, key: &str) -> String {
        format!("{{{}:{}}}:r:{}", self.prefix, kind.as_str(), key)
    }

    fn index_key(&self, kind: Kind) -> String {
        format!("{{{}:{}}}:idx", self.prefix, kind.as_str())
    }
}

#[async_trait::async_trait]
impl RecordStore for RedisDb {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        // SET … GET returns the previous value, in the same MULTI as the index
        // update, so a record is never visible without its index entry.
        let (old,): (Option<Vec<u8>>,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.record_key(kind, key))
            .arg(value)
            .arg("GET")
            .cmd("ZADD")
            .arg(self.index_key(kind))
            .arg(0)
            .arg(key)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(match old {
            None => Written::Created,
            Some(v) if v == value => Written::Unchanged,
            Some(_) => Written::Updated,
        })
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        conn.get(self.record_key(kind, key)).await.map_err(store_error)
    }

    async fn get_many(&self, items: &[(Kind, &str)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = items.iter().map(|(kind, key)| self.record_key(*kind, key)).collect();
        match &self.conn {
            // A pipeline, not MGET: the records live under different hash tags.
            // MULTI makes the answers one consistent snapshot, like SQLite's
            // read transaction, still in one round trip.
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for key in &keys {
                    pipe.get(key);
                }
                let mut conn = self.conn.clone();
                pipe.query_async(&mut conn).await.map_err(store_error)
            }
            // A cluster refuses pipelines that span slots: concurrent GETs, one
            // round trip of latency to each node involved.
            Conn::Cluster(_) => {
                let gets = keys.iter().map(|key| {
                    let mut conn = self.conn.clone();
                    async move { conn.get::<_, Option<Vec<u8>>>(key).await }
                });
                futures_util::future::try_join_all(gets).await.map_err(store_error)
            }
        }
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let (deleted,): (i64,) = redis::pipe()
            .atomic()
            .del(self.record_key(kind, key))
            .zrem(self.index_key(kind), key)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(deleted > 0)
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let min = match after {
            Some(a) if a >= prefix => format!("({a}").into_bytes(),
            _ => format!("[{prefix}").into_bytes(),
        };
        // 0xFF sorts after every byte of UTF-8 text: the end of the prefix range.
        let mut max = format!("[{prefix}").into_bytes();
        max.push(0xFF);
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.index_key(kind))
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let record_keys: Vec<String> = keys.iter().map(|k| self.record_key(kind, k)).collect();
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(&record_keys).query_async(&mut conn).await.map_err(store_error)?;
        // A key whose record vanished between the two reads was deleted meanwhile.
        Ok(keys.into_iter().zip(values).filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(store_error)?;
        Ok(())
    }
}
