//! Quotas on Redis: one Lua script per initiation.
//!
//! Keys, all under the customer's hash tag so the script's keys share one
//! slot on Redis Cluster (prefix `tg`, customer `acme`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{tg:q:acme}:s:<grant>` | string, TTL | the grant's start time: it is started |
//! | `{tg:q:acme}:c:d:2026-11-24` | hash, TTL | the day's counters |
//! | `{tg:q:acme}:c:m:2026-11` | hash, TTL | the month's counters |
//! | `{tg:q:acme}:c:a` | hash | per-artifact lifetime counts |
//! | `{tg:q:acme}:l` / `…:l:<entitlement>` | sorted set | leases: `<grant> <holder>` → expiry (a member per grant and gateway; limits count distinct grants) |
//!
//! Counter fields: `n` (downloads), `b` (bytes), `<product>/<version>/<file>`
//! (per artifact), and the same prefixed `e:<entitlement>:` for entitlement
//! scope.

use redis::Script;

use super::{RedisDb, store_error};
use crate::catalog::store::StoreError;
use crate::quota::{Acquired, Counter, Initiation, LeaseStep, Outcome, QuotaStore, lease_grant};

/// Lua: `census(key, grant)` — the distinct grants in lease set `key` (its
/// members are `<grant>` or `<grant> <holder>`) and whether `grant` is one.
macro_rules! census {
    () => {
        r"
local function census(key, grant)
  local n, mine, seen = 0, false, {}
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local g = string.match(m, '^[^ ]*')
    if not seen[g] then
      seen[g] = true
      n = n + 1
    end
    if g == grant then mine = true end
  end
  return n, mine
end
"
    };
}

/// A stream's bytes: `KEYS[1]` the grant's delivered counter (hash, field
/// `ARGV[1]`), then the byte counters to charge. `ARGV`: field, `sent`,
/// `size`, the delivered counter's ttl, then per charged counter its field
/// and ttl (`0`: keep). Adds `sent`, charges what passed `size` with it;
/// answers the new total.
const DELIVER: &str = r"
local sent, size = tonumber(ARGV[2]), tonumber(ARGV[3])
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], sent)
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
local before = total - sent
local extra = math.max(0, total - size) - math.max(0, before - size)
if extra > 0 then
  for i = 2, #KEYS do
    local o = 5 + (i - 2) * 2
    redis.call('HINCRBY', KEYS[i], ARGV[o], extra)
    if tonumber(ARGV[o + 1]) > 0 then redis.call('EXPIRE', KEYS[i], ARGV[o + 1]) end
  end
end
return total
";

/// The initiation script.
///
/// `KEYS[1]` the started mark; `KEYS[2 .. 1+nc]` the counter buckets of the
/// steps, in order; then the `nl` lease sets.
/// `ARGV`: `now`, `started_ttl`, `nc`, `nl`, `grant`, `lease_expires`; then
/// per step `field`, `add`, `limit` (`-1`: none), `ttl` (`0`: keep); then per
/// lease set `limit`.
///
/// Answers `{1, started_at}` when the grant was started before (nothing
/// changes), `{0, index, used[, oldest_lease_expiry]}` when step `index`
/// (1-based; lease sets follow the steps) refuses (nothing is recorded; lapsed
/// leases may have been pruned), and `{2, now}` when this is the initiation
/// (everything recorded; a lease set expires with its newest lease).
const INITIATE: &str = concat!(
    r"
local now = tonumber(ARGV[1])
local started = redis.call('GET', KEYS[1])
if started then return {1, tonumber(started)} end
local nc, nl, member = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local grant = string.match(member, '^[^ ]*')
",
    census!(),
    r"
for i = 1, nc do
  local o = 6 + (i - 1) * 4
  local limit = tonumber(ARGV[o + 3])
  if limit >= 0 then
    local used = tonumber(redis.call('HGET', KEYS[1 + i], ARGV[o + 1]) or '0')
    if used + tonumber(ARGV[o + 2]) > limit then return {0, i, used} end
  end
end
local lo = 6 + nc * 4
for j = 1, nl do
  local key = KEYS[1 + nc + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[lo + j])
  if limit >= 0 then
    local held, mine = census(key, grant)
    if not mine and held >= limit then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      return {0, nc + j, held, tonumber(oldest[2] or now)}
    end
  end
end
for i = 1, nc do
  local o = 6 + (i - 1) * 4
  redis.call('HINCRBY', KEYS[1 + i], ARGV[o + 1], ARGV[o + 2])
  local ttl = tonumber(ARGV[o + 4])
  if ttl > 0 then redis.call('EXPIRE', KEYS[1 + i], ttl) end
end
for j = 1, nl do
  redis.call('ZADD', KEYS[1 + nc + j], ARGV[6], member)
  redis.call('EXPIRE', KEYS[1 + nc + j], math.max(tonumber(ARGV[6]) - now, 1))
end
redis.call('SET', KEYS[1], now, 'EX', ARGV[2])
return {2, now}
"
);

/// A resume's leases: KEYS are the lease sets; ARGV now, expiry, the lease
/// member, then each set's limit (-1: none). Answers `{1}` when every set
/// took the member, `{0, index, used, oldest_expiry}` (1-based index) when a
/// set without the member's grant is full; then nothing is written.
const ACQUIRE: &str = concat!(
    r"
local now, expires, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local grant = string.match(member, '^[^ ]*')
",
    census!(),
    r"
for j = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[j], '-inf', now)
  local limit = tonumber(ARGV[3 + j])
  if limit >= 0 then
    local held, mine = census(KEYS[j], grant)
    if not mine and held >= limit then
      local oldest = redis.call('ZRANGE', KEYS[j], 0, 0, 'WITHSCORES')
      return {0, j, held, tonumber(oldest[2] or now)}
    end
  end
end
for j = 1, #KEYS do
  redis.call('ZADD', KEYS[j], expires, member)
  redis.call('EXPIRE', KEYS[j], math.max(expires - now, 1))
end
return {1}
"
);

impl RedisDb {
    fn quota_key(&self, customer: &str, rest: &str) -> String {
        format!("{{{}:q:{customer}}}:{rest}", self.prefix())
    }

    fn counter_key(&self, customer: &str, c: &Counter) -> String {
        self.quota_key(customer, &format!("c:{}", c.bucket))
    }

    fn lease_key(&self, customer: &str, set: &str) -> String {
        self.quota_key(customer, set)
    }
}

/// A limit as the script takes it: `-1` for none.
fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

fn as_u64(values: &[i64], i: usize) -> Option<u64> {
    values.get(i).and_then(|v| u64::try_from(*v).ok())
}

#[async_trait::async_trait]
impl QuotaStore for RedisDb {
    async fn initiate(&self, i: &Initiation) -> Result<Outcome, StoreError> {
        // Script hashes the source once; `invoke_async` sends EVALSHA and, on
        // NOSCRIPT (a restarted or flushed Redis), loads it and retries.
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(INITIATE));
        let mut call = SCRIPT.prepare_invoke();
        call.key(self.quota_key(&i.customer, &format!("s:{}", i.grant)));
        for s in &i.steps {
            call.key(self.counter_key(&i.customer, &s.counter));
        }
        for l in &i.leases {
            call.key(self.lease_key(&i.customer, &l.set));
        }
        call.arg(i.now)
            .arg(i.started_ttl)
            .arg(i.steps.len())
            .arg(i.leases.len())
            .arg(&i.lease_member)
            .arg(i.lease_expires);
        for s in &i.steps {
            call.arg(&s.counter.field).arg(s.add).arg(limit_arg(s.limit)).arg(s.counter.ttl.unwrap_or(0));
        }
        for l in &i.leases {
            call.arg(limit_arg(l.limit));
        }
        let mut conn = self.connection();
        let answer: Vec<i64> = call.invoke_async(&mut conn).await.map_err(store_error)?;
        let bad = || StoreError::Internal(format!("the quota script answered {answer:?}"));
        match answer.first() {
            Some(2) => Ok(Outcome::Started),
            Some(1) => Ok(Outcome::AlreadyStarted { at: as_u64(&answer, 1).ok_or_else(bad)? }),
            Some(0) => {
                let index = as_u64(&answer, 1).and_then(|i| usize::try_from(i).ok()).filter(|i| *i >= 1);
                Ok(Outcome::Refused {
                    index: index.ok_or_else(bad)? - 1,
                    used: as_u64(&answer, 2).unwrap_or(0),
                    oldest_lease_expires: as_u64(&answer, 3),
                })
            }
            _ => Err(bad()),
        }
    }

    async fn read(
        &self,
        customer: &str,
        now: u64,
        counters: &[Counter],
        lease_sets: &[String],
    ) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
        if counters.is_empty() && lease_sets.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // One slot (the customer's tag): one pipeline on a cluster too.
        let mut pipe = redis::pipe();
        for c in counters {
            pipe.hget(self.counter_key(customer, c), &c.field);
        }
        for set in lease_sets {
            pipe.zrangebyscore(self.lease_key(customer, set), format!("({now}"), "+inf");
        }
        let mut conn = self.connection();
        let mut answers: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(store_error)?;
        let leases = answers.split_off(counters.len().min(answers.len()));
        let parsed = |e: redis::ParsingError| StoreError::Internal(format!("unexpected answer to a quota read: {e}"));
        let values = answers
            .into_iter()
            .map(|v| <Option<u64> as redis::FromRedisValue>::from_redis_value(v).map(Option::unwrap_or_default))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(parsed)?;
        // The grants with a live lease: one grant held by several gateways
        // (a member each) counts once.
        let mut held = Vec::with_capacity(leases.len());
        for v in leases {
            let members = <Vec<String> as redis::FromRedisValue>::from_redis_value(v).map_err(parsed)?;
            let grants: std::collections::HashSet<&str> = members.iter().map(|m| lease_grant(m)).collect();
            held.push(grants.len() as u64);
        }
        Ok((values, held))
    }

    async fn acquire_leases(
        &self,
        customer: &str,
        member: &str,
        leases: &[LeaseStep],
        now: u64,
        expires: u64,
    ) -> Result<Acquired, StoreError> {
        let script = Script::new(ACQUIRE);
        let mut call = script.prepare_invoke();
        for l in leases {
            call.key(self.lease_key(customer, &l.set));
        }
        call.arg(now).arg(expires).arg(member);
        for l in leases {
            call.arg(limit_arg(l.limit));
        }
        let mut conn = self.connection();
        let answer: Vec<i64> = call.invoke_async(&mut conn).await.map_err(store_error)?;
        let n = |i: usize| answer.get(i).copied().and_then(|v| u64::try_from(v).ok());
        Ok(match answer.first() {
            Some(1) => Acquired::Held,
            _ => Acquired::Refused {
                index: n(1).map_or(0, |j| usize::try_from(j).unwrap_or(1).saturating_sub(1)),
                used: n(2).unwrap_or(0),
                oldest_lease_expires: n(3),
            },
        })
    }

    async fn renew_leases(
        &self,
        customer: &str,
        member: &str,
        sets: &[String],
        now: u64,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for set in sets {
            let key = self.lease_key(customer, set);
            pipe.zadd(&key, member, now + ttl).ignore();
            // The set lives as long as its newest lease.
            pipe.expire(&key, i64::try_from(ttl).unwrap_or(i64::MAX)).ignore();
        }
        let mut conn = self.connection();
        pipe.query_async::<()>(&mut conn).await.map_err(store_error)
    }

    async fn record_delivery(
        &self,
        customer: &str,
        delivered: &Counter,
        sent: u64,
        size: u64,
        charge: &[Counter],
        _now: u64,
    ) -> Result<u64, StoreError> {
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(DELIVER));
        let mut call = SCRIPT.prepare_invoke();
        call.key(self.counter_key(customer, delivered));
        for c in charge {
            call.key(self.counter_key(customer, c));
        }
        call.arg(&delivered.field).arg(sent).arg(size).arg(delivered.ttl.unwrap_or(0));
        for c in charge {
            call.arg(&c.field).arg(c.ttl.unwrap_or(0));
        }
        let mut conn = self.connection();
        call.invoke_async(&mut conn).await.map_err(store_error)
    }

    async fn release_leases(&self, customer: &str, member: &str, sets: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for set in sets {
            pipe.zrem(self.lease_key(customer, set), member).ignore();
        }
        let mut conn = self.connection();
        pipe.query_async::<()>(&mut conn).await.map_err(store_error)
    }
}
