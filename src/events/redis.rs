//! The event log on Redis. Every key carries the hash tag `{<prefix>:ev}`, so
//! the append script's keys share one slot on Redis Cluster too (prefix `tg`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{tg:ev}:log` | stream, field `e` | the events' JSON; the entry id is the cursor |
//! | `{tg:ev}:w` | hash | writer → highest sequence appended |
//! | `{tg:ev}:r:<day>` | hash, expires | `<dimension>␟<value>␟<metric>` → n |
//! | `{tg:ev}:u:<day>` | set, expires | `<dimension>␟<value>␟<customer>`: who initiated |
//! | `{tg:ev}:a:<product>/<version>` | hash | `i:<customer>` / `c:<customer>` → first initiated / completed, ms |
//!
//! (`␟` is the unit separator, `\x1f`.) One append is one Lua script: the
//! events, their counters and the writers' marks change together.

use std::collections::{BTreeMap, HashMap};

use redis::Script;

use redis::Value;

use super::{Adoption, Cell, Days, Dimension, Event, EventLog, Filter, LogPage, Retention, Seen, Sequenced};
use crate::store::StoreError;
use crate::store::redis::{RedisStore, store_error};

const SEP: char = '\x1f';

/// The append script.
///
/// `KEYS[1]` the stream, `KEYS[2]` the writers' marks, then the counter and
/// adoption keys the events name by index. `ARGV`: `maxlen`, the event count,
/// then per event: writer, seq, JSON, counter-hash index, seen-set index,
/// adoption index (`0`: none), expiry (Unix s), #adds, #seen; then the adds
/// (field, n), the seen members, and the adoption field and value.
const APPEND: &str = r"
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local p, new, marks = 3, 0, {}
for i = 1, n do
  local writer, seq, body = ARGV[p], tonumber(ARGV[p + 1]), ARGV[p + 2]
  local rk, uk, ak = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5])
  local expire_at, nadd, nseen = ARGV[p + 6], tonumber(ARGV[p + 7]), tonumber(ARGV[p + 8])
  p = p + 9
  local mark = marks[writer]
  if mark == nil then mark = tonumber(redis.call('HGET', KEYS[2], writer) or '0') end
  local fresh = seq > mark
  if fresh then
    marks[writer] = seq
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'e', body)
    new = new + 1
  end
  for j = 1, nadd do
    if fresh then redis.call('HINCRBY', KEYS[rk], ARGV[p], ARGV[p + 1]) end
    p = p + 2
  end
  if fresh and nadd > 0 then redis.call('EXPIREAT', KEYS[rk], expire_at) end
  for j = 1, nseen do
    if fresh then redis.call('SADD', KEYS[uk], ARGV[p]) end
    p = p + 1
  end
  if fresh and nseen > 0 then redis.call('EXPIREAT', KEYS[uk], expire_at) end
  if ak > 0 then
    if fresh then redis.call('HSETNX', KEYS[ak], ARGV[p], ARGV[p + 1]) end
    p = p + 2
  end
end
for w, s in pairs(marks) do redis.call('HSET', KEYS[2], w, s) end
return new
";

impl RedisStore {
    fn event_key(&self, rest: &str) -> String {
        format!("{{{}:ev}}:{rest}", self.prefix())
    }
}

/// The keys of one script call, numbered in order of first use.
#[derive(Default)]
struct Keys {
    list: Vec<String>,
    index: HashMap<String, usize>,
}

impl Keys {
    fn of(&mut self, key: String) -> usize {
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        self.list.push(key.clone());
        let i = self.list.len();
        self.index.insert(key, i);
        i
    }
}

/// Unix seconds at the start of `day` (`2026-11-24`).
fn day_start(day: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).ok()?;
    Some(crate::clock::unix_seconds(t))
}

#[async_trait::async_trait]
impl EventLog for RedisStore {
    async fn append(&self, events: &[Sequenced], retention: &Retention) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(APPEND));
        let mut keys = Keys::default();
        keys.of(self.event_key("log"));
        keys.of(self.event_key("w"));
        let mut args: Vec<Vec<u8>> = vec![retention.max_events.to_string().into(), events.len().to_string().into()];
        for s in events {
            let fx = super::effects(&s.event);
            let body = serde_json::to_vec(&s.event).map_err(|e| StoreError::Internal(e.to_string()))?;
            let rk = keys.of(self.event_key(&format!("r:{}", fx.day)));
            let uk = keys.of(self.event_key(&format!("u:{}", fx.day)));
            let ak = match &fx.adopted {
                Some((release, ..)) => keys.of(self.event_key(&format!("a:{release}"))),
                None => 0,
            };
            let expire_at = day_start(&fx.day).unwrap_or(0) + (retention.report_days + 1) * 86_400;
            let header = [
                s.writer.clone(),
                s.seq.to_string(),
                String::new(),
                rk.to_string(),
                uk.to_string(),
                ak.to_string(),
                expire_at.to_string(),
                fx.add.len().to_string(),
                fx.seen.len().to_string(),
            ];
            for (i, h) in header.into_iter().enumerate() {
                args.push(if i == 2 { body.clone() } else { h.into_bytes() });
            }
            for (dimension, value, metric, n) in &fx.add {
                args.push(format!("{}{SEP}{value}{SEP}{metric}", dimension.as_str()).into_bytes());
                args.push(n.to_string().into_bytes());
            }
            for (dimension, value, customer) in &fx.seen {
                args.push(format!("{}{SEP}{value}{SEP}{customer}", dimension.as_str()).into_bytes());
            }
            if let Some((_, customer, initiated, at)) = &fx.adopted {
                args.push(format!("{}:{customer}", if *initiated { "i" } else { "c" }).into_bytes());
                args.push(at.to_string().into_bytes());
            }
        }
        let mut call = SCRIPT.prepare_invoke();
        for k in &keys.list {
            call.key(k);
        }
        for a in &args {
            call.arg(a.as_slice());
        }
        let mut conn = self.connection();
        let new: u64 = call.invoke_async(&mut conn).await.map_err(store_error)?;
        Ok(usize::try_from(new).unwrap_or(usize::MAX))
    }

    async fn read(
        &self,
        after: Option<&str>,
        filter: &Filter,
        limit: usize,
        scan: usize,
    ) -> Result<LogPage, StoreError> {
        let key = self.event_key("log");
        let mut conn = self.connection();
        let mut items = Vec::new();
        let mut next = after.map(str::to_owned);
        let mut examined = 0;
        let mut more = false;
        'pages: loop {
            let start = next.as_ref().map_or_else(|| "-".to_owned(), |c| format!("({c}"));
            let count = (limit - items.len()).max(100).min(scan - examined).max(1);
            type Entry = (String, HashMap<String, Vec<u8>>);
            let page: Vec<Entry> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            let got = page.len();
            for (id, fields) in page {
                if items.len() == limit || examined == scan {
                    more = true;
                    break 'pages;
                }
                examined += 1;
                next = Some(id.clone());
                let Some(body) = fields.get("e") else { continue };
                let event = serde_json::from_slice(body)
                    .map_err(|e| StoreError::Internal(format!("event {id} is corrupt: {e}")))?;
                if filter.matches(&event) {
                    items.push((id, event));
                }
            }
            if got < count {
                break;
            }
            if items.len() == limit || examined == scan {
                // Whether anything follows is for the next call to find out.
                more = true;
                break;
            }
        }
        Ok(LogPage { items, next, more })
    }

    fn valid_cursor(&self, cursor: &str) -> bool {
        match cursor.split_once('-') {
            Some((ms, seq)) => {
                let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
                digits(ms) && digits(seq) && ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok()
            }
            None => false,
        }
    }

    async fn cells(&self, days: &Days, dimension: Dimension) -> Result<(Vec<Cell>, Vec<Seen>), StoreError> {
        let (Some(from), Some(to)) = (day_start(&days.from), day_start(&days.to)) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let all_days: Vec<String> = (from..=to).step_by(86_400).map(super::day_of).collect();
        let mut pipe = redis::pipe();
        for day in &all_days {
            pipe.hgetall(self.event_key(&format!("r:{day}")));
            pipe.smembers(self.event_key(&format!("u:{day}")));
        }
        let mut conn = self.connection();
        type Answer = (BTreeMap<String, u64>, Vec<String>);
        let answers: Vec<Answer> = if all_days.is_empty() {
            Vec::new()
        } else {
            // Pairs of replies: decode as a flat list, then pair up.
            let flat: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(store_error)?;
            let mut out = Vec::with_capacity(all_days.len());
            let mut it = flat.into_iter();
            while let (Some(h), Some(s)) = (it.next(), it.next()) {
                out.push((
                    redis::from_redis_value(h).map_err(|e| StoreError::Internal(e.to_string()))?,
                    redis::from_redis_value(s).map_err(|e| StoreError::Internal(e.to_string()))?,
                ));
            }
            out
        };
        let (mut cells, mut seen) = (Vec::new(), Vec::new());
        let wanted = dimension.as_str();
        for (day, (counts, members)) in all_days.iter().zip(answers) {
            for (field, n) in counts {
                let mut parts = field.splitn(3, SEP);
                if let (Some(d), Some(value), Some(metric)) = (parts.next(), parts.next(), parts.next())
                    && d == wanted
                {
                    cells.push(Cell {
                        day: day.clone(),
                        dimension,
                        value: value.to_owned(),
                        metric: metric.to_owned(),
                        n,
                    });
                }
            }
            for m in members {
                let mut parts = m.splitn(3, SEP);
                if let (Some(d), Some(value), Some(customer)) = (parts.next(), parts.next(), parts.next())
                    && d == wanted
                {
                    seen.push(Seen {
                        day: day.clone(),
                        dimension,
                        value: value.to_owned(),
                        customer: customer.to_owned(),
                    });
                }
            }
        }
        Ok((cells, seen))
    }

    async fn adoption(&self, product: &str, version: &str) -> Result<Vec<Adoption>, StoreError> {
        let mut conn = self.connection();
        let fields: BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(self.event_key(&format!("a:{product}/{version}")))
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        let mut by_customer: BTreeMap<String, Adoption> = BTreeMap::new();
        for (field, at) in fields {
            let Some((which, customer)) = field.split_once(':') else { continue };
            let a = by_customer
                .entry(customer.to_owned())
                .or_insert_with(|| Adoption { customer: customer.to_owned(), ..Adoption::default() });
            match which {
                "i" => a.first_initiated = Some(at),
                "c" => a.first_completed = Some(at),
                _ => {}
            }
        }
        Ok(by_customer.into_values().collect())
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let mut conn = self.connection();
        // Entry ids are the times events were appended, which is when they
        // happened, except for replayed ones (a little later). Counters expire
        // by themselves (EXPIREAT on write). `~`: whole stream nodes only,
        // which is cheap; a few more entries than the limits may stay.
        let mut pipe = redis::pipe();
        pipe.cmd("XTRIM").arg(self.event_key("log")).arg("MINID").arg("~").arg(cutoff);
        pipe.cmd("XTRIM").arg(self.event_key("log")).arg("MAXLEN").arg("~").arg(retention.max_events);
        let (by_age, by_count): (u64, u64) = pipe.query_async(&mut conn).await.map_err(store_error)?;
        Ok(by_age + by_count)
    }

    async fn create_group(&self, group: &str) -> Result<(), StoreError> {
        let mut conn = self.connection();
        let created: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.event_key("log"))
            .arg(group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn claim(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        idle_ms: u64,
    ) -> Result<Vec<(String, Option<Event>)>, StoreError> {
        let key = self.event_key("log");
        let mut conn = self.connection();
        // Entries a consumer took and went silent on (a replica that died).
        let stale: Result<Value, _> = redis::cmd("XAUTOCLAIM")
            .arg(&key)
            .arg(group)
            .arg(consumer)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await;
        let stale = match stale {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.create_group(group).await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(store_error(e)),
        };
        if let Value::Array(parts) = &stale
            && let Some(entries) = parts.get(1)
        {
            let taken = stream_entries(entries);
            if !taken.is_empty() {
                return Ok(taken);
            }
        }
        let fresh: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        // [[stream, entries]], or nil when there is nothing new.
        Ok(match &fresh {
            Value::Array(streams) => streams
                .iter()
                .filter_map(|s| match s {
                    Value::Array(pair) => pair.get(1).map(stream_entries),
                    _ => None,
                })
                .flatten()
                .collect(),
            Value::Map(streams) => streams.iter().flat_map(|(_, entries)| stream_entries(entries)).collect(),
            _ => Vec::new(),
        })
    }

    async fn ack(&self, group: &str, position: &str) -> Result<(), StoreError> {
        let mut conn = self.connection();
        redis::cmd("XACK")
            .arg(self.event_key("log"))
            .arg(group)
            .arg(position)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        let mut conn = self.connection();
        redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(self.event_key("log"))
            .arg(group)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[[id, [field, value, …]], …]` as (id, decoded event).
fn stream_entries(v: &Value) -> Vec<(String, Option<Event>)> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(entry) = item else { return None };
            let id = text(entry.first()?)?;
            let body = match entry.get(1) {
                Some(Value::Array(fields)) => fields.chunks(2).find_map(|kv| match kv {
                    [Value::BulkString(k), Value::BulkString(v)] if k == b"e" => Some(v),
                    _ => None,
                }),
                _ => None,
            };
            Some((id, body.and_then(|b| serde_json::from_slice(b).ok())))
        })
        .collect()
}
