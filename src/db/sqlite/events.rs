//! The event log on SQLite (schema version 3, created in [`super::SqliteDb::open`]):
//!
//! | table | holds |
//! |---|---|
//! | `events` | the log; `seq` (AUTOINCREMENT, never reused) is the cursor |
//! | `event_writers` | per writer, the highest sequence appended |
//! | `report_counts` | `(day, dimension, value, metric) → n` |
//! | `report_customers` | `(day, dimension, value, customer)`: who initiated |
//! | `adoption` | `(release, customer) → first initiated / completed`, ms |
//! | `event_groups` | consumer group → the last `seq` acknowledged |
//!
//! One append is one transaction: the events, their counters and the writers'
//! marks commit together or not at all.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use super::{SqliteDb, sqlite_error, to_i64, to_u64};
use crate::catalog::store::StoreError;
use crate::events::{
    Adoption, Cell, Days, Dimension, Event, EventLog, Filter, LogPage, MergedEffects, Retention, Seen, Sequenced,
};

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// Apply a batch's counter changes inside the append's transaction.
fn apply(tx: &Transaction<'_>, fx: &MergedEffects) -> Result<(), StoreError> {
    let mut add = tx
        .prepare_cached(
            "INSERT INTO report_counts (day, dimension, value, metric, n) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (day, dimension, value, metric) DO UPDATE SET n = n + excluded.n",
        )
        .map_err(sqlite_error)?;
    for ((day, dimension, value, metric), n) in &fx.add {
        add.execute(params![day, dimension.as_str(), value, metric, to_i64(*n)]).map_err(sqlite_error)?;
    }
    let mut seen = tx
        .prepare_cached(
            "INSERT INTO report_customers (day, dimension, value, customer) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )
        .map_err(sqlite_error)?;
    for (day, dimension, value, customer) in &fx.seen {
        seen.execute(params![day, dimension.as_str(), value, customer]).map_err(sqlite_error)?;
    }
    for ((release, customer, initiated), at) in &fx.adopted {
        let column = if *initiated { "first_initiated" } else { "first_completed" };
        tx.prepare_cached(&format!(
            "INSERT INTO adoption (release, customer, {column}) VALUES (?1, ?2, ?3)
             ON CONFLICT (release, customer) DO UPDATE SET {column} = coalesce({column}, excluded.{column})"
        ))
        .map_err(sqlite_error)?
        .execute(params![release, customer, to_i64(*at)])
        .map_err(sqlite_error)?;
    }
    Ok(())
}

fn append(conn: &mut Connection, events: &[Sequenced]) -> Result<usize, StoreError> {
    let tx = conn.transaction().map_err(sqlite_error)?;
    let mut marks: HashMap<String, u64> = HashMap::new();
    let mut effects = MergedEffects::default();
    let mut new = 0;
    for s in events {
        let mark = match marks.get(&s.writer) {
            Some(m) => *m,
            None => {
                let m: Option<i64> = tx
                    .query_row("SELECT seq FROM event_writers WHERE writer = ?1", [&s.writer], |r| r.get(0))
                    .optional()
                    .map_err(sqlite_error)?;
                let m = m.map_or(0, to_u64);
                marks.insert(s.writer.clone(), m);
                m
            }
        };
        if s.seq <= mark {
            continue;
        }
        marks.insert(s.writer.clone(), s.seq);
        let e = &s.event;
        let body = serde_json::to_vec(e).map_err(internal)?;
        let inserted = tx
            .prepare_cached(
                "INSERT INTO events (id, at, type, customer, product, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING",
            )
            .map_err(sqlite_error)?
            .execute(params![e.id, to_i64(e.at), e.event_type().as_str(), e.subject.customer, e.subject.product, body])
            .map_err(sqlite_error)?;
        if inserted == 1 {
            effects.push(crate::events::effects(e));
            new += 1;
        }
    }
    apply(&tx, &effects)?;
    for (writer, seq) in &marks {
        tx.execute(
            "INSERT INTO event_writers (writer, seq) VALUES (?1, ?2)
             ON CONFLICT (writer) DO UPDATE SET seq = max(seq, excluded.seq)",
            params![writer, to_i64(*seq)],
        )
        .map_err(sqlite_error)?;
    }
    tx.commit().map_err(sqlite_error)?;
    Ok(new)
}

/// `WHERE` conditions (after `seq > ?`) and their arguments for `filter`.
fn filtered(filter: &Filter, sql: &mut String, args: &mut Vec<rusqlite::types::Value>) {
    if !filter.types.is_empty() {
        sql.push_str(" AND type IN (");
        for (i, t) in filter.types.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(t.as_str().to_owned().into());
        }
        sql.push(')');
    }
    if let Some(c) = &filter.customer {
        sql.push_str(" AND customer = ?");
        args.push(c.clone().into());
    }
    if let Some(p) = &filter.product {
        sql.push_str(" AND product = ?");
        args.push(p.clone().into());
    }
}

fn recent(conn: &mut Connection, filter: &Filter, limit: usize) -> Result<Vec<Event>, StoreError> {
    let mut sql = "SELECT seq, body FROM events WHERE seq > 0".to_owned();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    filtered(filter, &mut sql, &mut args);
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    args.push(to_i64(limit as u64).into());
    let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(sqlite_error)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, body) = row.map_err(sqlite_error)?;
        match serde_json::from_slice::<Event>(&body) {
            Ok(event) => out.push(event),
            Err(e) => tracing::warn!(seq, error = %e, "skipping an undecodable event"),
        }
    }
    Ok(out)
}

fn read(conn: &mut Connection, after: i64, filter: &Filter, limit: usize) -> Result<LogPage, StoreError> {
    let tx = conn.transaction().map_err(sqlite_error)?;
    let mut sql = "SELECT seq, body FROM events WHERE seq > ?".to_owned();
    let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
    filtered(filter, &mut sql, &mut args);
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(to_i64(limit as u64 + 1).into());
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut stmt = tx.prepare_cached(&sql).map_err(sqlite_error)?;
        let rows = stmt.query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?))).map_err(sqlite_error)?;
        rows.collect::<Result<_, _>>().map_err(sqlite_error)?
    };
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last = None;
    for (seq, body) in rows.into_iter().take(limit) {
        last = Some(seq);
        match serde_json::from_slice::<Event>(&body) {
            Ok(event) => items.push((seq.to_string(), event)),
            // Skipped, not fatal: one bad row must not stop every reader.
            Err(e) => tracing::warn!(seq, error = %e, "skipping an undecodable event"),
        }
    }
    // Nothing (more) matches: continue after the newest event, so a filtered
    // follower does not re-examine the same tail on every poll.
    let next = match (more, last) {
        (true, Some(seq)) => Some(seq.to_string()),
        _ => {
            let newest: Option<i64> =
                tx.query_row("SELECT max(seq) FROM events", [], |r| r.get(0)).map_err(sqlite_error)?;
            newest.map(|n| n.max(after).to_string()).or_else(|| (after > 0).then(|| after.to_string()))
        }
    };
    tx.commit().map_err(sqlite_error)?;
    Ok(LogPage { items, next, more })
}

#[async_trait::async_trait]
impl EventLog for SqliteDb {
    async fn append(&self, events: &[Sequenced], _retention: &Retention) -> Result<usize, StoreError> {
        let events = events.to_vec();
        self.with_conn(move |conn| append(conn, &events)).await
    }

    async fn read(
        &self,
        after: Option<&str>,
        filter: &Filter,
        limit: usize,
        _scan: usize,
    ) -> Result<LogPage, StoreError> {
        let after = match after {
            Some(c) => c.parse::<i64>().map_err(|_| StoreError::Internal(format!("not a cursor: {c:?}")))?,
            None => 0,
        };
        let filter = filter.clone();
        self.with_conn(move |conn| read(conn, after, &filter, limit)).await
    }

    async fn recent(&self, filter: &Filter, limit: usize, _scan: usize) -> Result<Vec<Event>, StoreError> {
        let filter = filter.clone();
        self.with_conn(move |conn| recent(conn, &filter, limit)).await
    }

    async fn end(&self) -> Result<Option<String>, StoreError> {
        self.with_conn(|conn| {
            let seq: Option<i64> =
                conn.query_row("SELECT max(seq) FROM events", [], |r| r.get(0)).map_err(sqlite_error)?;
            Ok(seq.map(|s| s.to_string()))
        })
        .await
    }

    fn valid_cursor(&self, cursor: &str) -> bool {
        cursor.bytes().all(|b| b.is_ascii_digit()) && cursor.parse::<i64>().is_ok()
    }

    async fn cells(&self, days: &Days, dimension: Dimension) -> Result<(Vec<Cell>, Vec<Seen>), StoreError> {
        let days = days.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let cells = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT day, value, metric, n FROM report_counts
                         WHERE dimension = ?1 AND day >= ?2 AND day <= ?3",
                    )
                    .map_err(sqlite_error)?;
                let rows = stmt
                    .query_map(params![dimension.as_str(), days.from, days.to], |r| {
                        Ok(Cell {
                            day: r.get(0)?,
                            dimension,
                            value: r.get(1)?,
                            metric: r.get(2)?,
                            n: to_u64(r.get(3)?),
                        })
                    })
                    .map_err(sqlite_error)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)?
            };
            let seen = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT day, value, customer FROM report_customers
                         WHERE dimension = ?1 AND day >= ?2 AND day <= ?3",
                    )
                    .map_err(sqlite_error)?;
                let rows = stmt
                    .query_map(params![dimension.as_str(), days.from, days.to], |r| {
                        Ok(Seen { day: r.get(0)?, dimension, value: r.get(1)?, customer: r.get(2)? })
                    })
                    .map_err(sqlite_error)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)?
            };
            tx.commit().map_err(sqlite_error)?;
            Ok((cells, seen))
        })
        .await
    }

    async fn adoption(&self, product: &str, version: &str) -> Result<Vec<Adoption>, StoreError> {
        let release = format!("{product}/{version}");
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT customer, first_initiated, first_completed FROM adoption WHERE release = ?1
                     ORDER BY customer",
                )
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map([release], |r| {
                    Ok(Adoption {
                        customer: r.get(0)?,
                        first_initiated: r.get::<_, Option<i64>>(1)?.map(to_u64),
                        first_completed: r.get::<_, Option<i64>>(2)?.map(to_u64),
                    })
                })
                .map_err(sqlite_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)
        })
        .await
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let day = crate::events::day_of((now_ms / 1000).saturating_sub(retention.report_days.saturating_mul(86_400)));
        let max_events = retention.max_events;
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            let mut n = tx.execute("DELETE FROM events WHERE at < ?1", [to_i64(cutoff)]).map_err(sqlite_error)?;
            n += tx
                .execute("DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?1", [to_i64(max_events)])
                .map_err(sqlite_error)?;
            tx.execute("DELETE FROM report_counts WHERE day < ?1", [&day]).map_err(sqlite_error)?;
            tx.execute("DELETE FROM report_customers WHERE day < ?1", [&day]).map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(n as u64)
        })
        .await
    }

    async fn reset_group(&self, group: &str) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.with_conn(move |conn| {
            conn.execute(
                // `WHERE true`: without it SQLite reads `ON CONFLICT` as a join.
                "INSERT INTO event_groups (name, cursor) SELECT ?1, coalesce(max(seq), 0) FROM events WHERE true
                 ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor",
                [group],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    // One process serves an SQLite store, so a group has one consumer: what
    // it claimed and did not acknowledge is simply handed out again.
    async fn claim(
        &self,
        group: &str,
        _consumer: &str,
        count: usize,
        _idle_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let group = group.to_owned();
        self.with_conn(move |conn| {
            let cursor: Option<i64> = conn
                .query_row("SELECT cursor FROM event_groups WHERE name = ?1", [&group], |r| r.get(0))
                .optional()
                .map_err(sqlite_error)?;
            let Some(cursor) = cursor else { return Ok(Vec::new()) };
            let mut stmt = conn
                .prepare_cached("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![cursor, to_i64(count as u64)], |r| Ok((r.get::<_, i64>(0)?.to_string(), r.get(1)?)))
                .map_err(sqlite_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)
        })
        .await
    }

    async fn keep(&self, _group: &str, _consumer: &str, _position: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn ack(&self, group: &str, position: &str) -> Result<(), StoreError> {
        let (group, seq) = (group.to_owned(), position.parse::<i64>().map_err(internal)?);
        self.with_conn(move |conn| {
            conn.execute("UPDATE event_groups SET cursor = max(cursor, ?2) WHERE name = ?1", params![group, seq])
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM event_groups WHERE name = ?1", [group]).map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }
}
