//! Records on Redis: a string per record, its revision beside it, and a
//! sorted set per kind for ordered listing (layout in [`super`]).

use redis::AsyncCommands as _;
use std::sync::LazyLock;

use redis::Script;

use super::{Conn, RedisDb, store_error};
use crate::catalog::store::{
    CasOutcome, Expect, Kind, MAX_PAGE, RecordStore, StoreError, Versioned, Written, check_key,
};

/// Every write of a record, conditional or not, in one step: the value, its
/// revision and its index entry change together or not at all. KEYS: the
/// record, its revision, the kind's index (one hash slot). ARGV: the value,
/// the index member, the expectation (`*` any, `absent`, or a revision).
/// Answers `{outcome, revision}`: -1 conflict, 0 unchanged, 1 created,
/// 2 updated.
const WRITE: &str = r"
local old = redis.call('GET', KEYS[1])
local rev = tonumber(redis.call('GET', KEYS[2]) or '0')
local expect = ARGV[3]
if expect == 'absent' then
  if old then return {-1, rev} end
elseif expect ~= '*' then
  if (not old) or rev ~= tonumber(expect) then return {-1, rev} end
end
if old == ARGV[1] then return {0, rev} end
redis.call('SET', KEYS[1], ARGV[1])
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
if old then return {2, n} end
return {1, n}
";

/// [`WRITE`], hashed once.
static WRITE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE));

impl RedisDb {
    fn record_key(&self, kind: Kind, key: &str) -> String {
        format!("{{{}:{}}}:r:{}", self.prefix, kind.as_str(), key)
    }

    fn revision_key(&self, kind: Kind, key: &str) -> String {
        format!("{{{}:{}}}:v:{}", self.prefix, kind.as_str(), key)
    }

    /// Run [`WRITE`]; `expect` is `*`, `absent` or a revision.
    async fn write(&self, kind: Kind, key: &str, value: &[u8], expect: &str) -> Result<(i64, u64), StoreError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        let (outcome, revision): (i64, u64) = WRITE_SCRIPT
            .key(self.record_key(kind, key))
            .key(self.revision_key(kind, key))
            .key(self.index_key(kind))
            .arg(value)
            .arg(key)
            .arg(expect)
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok((outcome, revision))
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
        Ok(match self.write(kind, key, value, "*").await?.0 {
            1 => Written::Created,
            0 => Written::Unchanged,
            _ => Written::Updated,
        })
    }

    async fn get_versioned(&self, kind: Kind, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut conn = self.conn.clone();
        let (value, revision): (Option<Vec<u8>>, Option<u64>) = redis::cmd("MGET")
            .arg(self.record_key(kind, key))
            .arg(self.revision_key(kind, key))
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(value.map(|value| Versioned { value, revision: revision.unwrap_or(0) }))
    }

    async fn put_if(&self, kind: Kind, key: &str, value: &[u8], expect: Expect) -> Result<CasOutcome, StoreError> {
        let expect = match expect {
            Expect::Absent => "absent".to_owned(),
            Expect::Revision(r) => r.to_string(),
        };
        let (outcome, revision) = self.write(kind, key, value, &expect).await?;
        let written = match outcome {
            -1 => return Ok(CasOutcome::Conflict),
            0 => Written::Unchanged,
            1 => Written::Created,
            _ => Written::Updated,
        };
        Ok(CasOutcome::Written { written, revision })
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
            .del(self.revision_key(kind, key))
            .ignore()
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
