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

use super::{RedisDb, store_error};
use crate::catalog::store::StoreError;
use crate::events::{Adoption, Cell, Days, Dimension, Event, EventLog, Filter, LogPage, Retention, Seen, Sequenced};

const SEP: char = '\x1f';

/// A counter field or seen-set member: `<dimension>␟<group>␟<last>`, where
/// `last` is the metric or the customer.
fn cell_field(dimension: Dimension, group: &str, last: &str) -> Vec<u8> {
    format!("{}{SEP}{group}{SEP}{last}", dimension.as_str()).into_bytes()
}

/// The group and last part of a [`cell_field`] of `dimension`; `None` for
/// another dimension's.
fn cell_of(field: &str, dimension: Dimension) -> Option<(String, String)> {
    let mut parts = field.splitn(3, SEP);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(group), Some(last)) if d == dimension.as_str() => Some((group.to_owned(), last.to_owned())),
        _ => None,
    }
}

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
    -- The mark goes with the entry: Redis does not undo a script's earlier
    -- writes when a later command fails.
    redis.call('HSET', KEYS[2], writer, seq)
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
return new
";

/// Touch a pending entry if it is still the caller's: `KEYS[1]` the stream;
/// `ARGV`: group, consumer, entry id. Answers 1 if kept, 0 if another
/// consumer has it now (or nobody does).
const KEEP: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

impl RedisDb {
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

/// A stream entry: its id and fields.
type Entry = (String, HashMap<String, Vec<u8>>);

/// Up to `count` entries of the stream `key` from `from` to `to`, by
/// `XRANGE` (oldest first) or `XREVRANGE` (newest first).
async fn entries(
    conn: &mut super::Conn,
    command: &str,
    key: &str,
    from: &str,
    to: &str,
    count: usize,
) -> Result<Vec<Entry>, StoreError> {
    redis::cmd(command).arg(key).arg(from).arg(to).arg("COUNT").arg(count).query_async(conn).await.map_err(store_error)
}

#[async_trait::async_trait]
impl EventLog for RedisDb {
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
            let fx = crate::events::effects(&s.event);
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
                args.push(cell_field(*dimension, value, metric));
                args.push(n.to_string().into_bytes());
            }
            for (dimension, value, customer) in &fx.seen {
                args.push(cell_field(*dimension, value, customer));
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
            let page = entries(&mut conn, "XRANGE", &key, &start, "+", count).await?;
            let got = page.len();
            for (id, fields) in page {
                if items.len() == limit || examined == scan {
                    more = true;
                    break 'pages;
                }
                examined += 1;
                next = Some(id.clone());
                let Some(body) = fields.get("e") else { continue };
                match serde_json::from_slice::<Event>(body) {
                    Ok(event) if filter.matches(&event) => items.push((id, event)),
                    Ok(_) => {}
                    // Skipped, not fatal: one bad entry must not stop every reader.
                    Err(e) => tracing::warn!(id, error = %e, "skipping an undecodable event"),
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

    async fn recent(&self, filter: &Filter, limit: usize, scan: usize) -> Result<Vec<Event>, StoreError> {
        let key = self.event_key("log");
        let mut conn = self.connection();
        let mut out = Vec::new();
        let mut end = "+".to_owned();
        let mut examined = 0;
        while out.len() < limit && examined < scan {
            let count = (scan - examined).clamp(1, 500);
            let page = entries(&mut conn, "XREVRANGE", &key, &end, "-", count).await?;
            let got = page.len();
            for (id, fields) in page {
                examined += 1;
                end = format!("({id}");
                let Some(body) = fields.get("e") else { continue };
                match serde_json::from_slice::<Event>(body) {
                    Ok(event) if filter.matches(&event) => out.push(event),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(id, error = %e, "skipping an undecodable event"),
                }
                if out.len() == limit {
                    break;
                }
            }
            if got < count {
                break;
            }
        }
        Ok(out)
    }

    async fn end(&self) -> Result<Option<String>, StoreError> {
        let key = self.event_key("log");
        let mut conn = self.connection();
        let newest = entries(&mut conn, "XREVRANGE", &key, "+", "-", 1).await?;
        Ok(newest.into_iter().next().map(|(id, _)| id))
    }

    fn valid_cursor(&self, cursor: &str) -> bool {
        let Some((ms, seq)) = cursor.split_once('-') else { return false };
        let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
        match (number(ms), number(seq)) {
            // Nothing comes after the greatest id; Redis refuses it as a start.
            (Some(u64::MAX), Some(u64::MAX)) => false,
            (Some(_), Some(_)) => true,
            _ => false,
        }
    }

    async fn cells(&self, days: &Days, dimension: Dimension) -> Result<(Vec<Cell>, Vec<Seen>), StoreError> {
        let (Some(from), Some(to)) = (day_start(&days.from), day_start(&days.to)) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let all_days: Vec<String> = (from..=to).step_by(86_400).map(crate::events::day_of).collect();
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
            let flat: Vec<Value> = pipe.query_async(&mut conn).await.map_err(store_error)?;
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
        for (day, (counts, members)) in all_days.iter().zip(answers) {
            for (field, n) in counts {
                if let Some((value, metric)) = cell_of(&field, dimension) {
                    cells.push(Cell { day: day.clone(), dimension, value, metric, n });
                }
            }
            for m in members {
                if let Some((value, customer)) = cell_of(&m, dimension) {
                    seen.push(Seen { day: day.clone(), dimension, value, customer });
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

    async fn reset_group(&self, group: &str) -> Result<(), StoreError> {
        let key = self.event_key("log");
        let mut conn = self.connection();
        let created: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            // Left from an endpoint of the same id: start it afresh.
            Err(e) if e.code() == Some("BUSYGROUP") => redis::cmd("XGROUP")
                .arg("SETID")
                .arg(&key)
                .arg(group)
                .arg("$")
                .query_async::<()>(&mut conn)
                .await
                .map_err(store_error),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn claim(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        idle_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let key = self.event_key("log");
        let mut conn = self.connection();
        let read = |from: &'static str| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(count).arg("STREAMS").arg(&key).arg(from);
            cmd
        };
        let missing = |e: &redis::RedisError| e.code() == Some("NOGROUP");
        // Its own, taken before a restart (same consumer name) and not done.
        let own: Value = match read("0").query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(e)),
        };
        let taken = read_group_entries(&own);
        if !taken.is_empty() {
            return Ok(taken);
        }
        // Those a consumer took and went silent on (a replica that died).
        let stale: Value = redis::cmd("XAUTOCLAIM")
            .arg(&key)
            .arg(group)
            .arg(consumer)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        if let Value::Array(parts) = &stale
            && let Some(entries) = parts.get(1)
        {
            let taken = stream_entries(entries);
            if !taken.is_empty() {
                return Ok(taken);
            }
        }
        let fresh: Value = read(">").query_async(&mut conn).await.map_err(store_error)?;
        Ok(read_group_entries(&fresh))
    }

    async fn keep(&self, group: &str, consumer: &str, position: &str) -> Result<bool, StoreError> {
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(KEEP));
        let mut conn = self.connection();
        let kept: i64 = SCRIPT
            .key(self.event_key("log"))
            .arg(group)
            .arg(consumer)
            .arg(position)
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(kept == 1)
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
        let destroyed = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(self.event_key("log"))
            .arg(group)
            .query_async::<i64>(&mut conn)
            .await;
        match destroyed {
            Ok(_) => Ok(()),
            // No log at all (a flushed Redis): no group either.
            Err(e) if e.to_string().contains("requires the key to exist") => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[[stream, entries]]` (RESP2) or `{stream: entries}` (RESP3) from
/// `XREADGROUP`; nil when there is nothing.
fn read_group_entries(v: &Value) -> Vec<(String, Vec<u8>)> {
    match v {
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
    }
}

/// `[[id, [field, value, …]], …]` as (id, the event's JSON). An entry
/// without a body (trimmed while pending) comes with an empty one.
fn stream_entries(v: &Value) -> Vec<(String, Vec<u8>)> {
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
            Some((id, body.cloned().unwrap_or_default()))
        })
        .collect()
}
