//! Reading the whole queue out, page by page, for `webhookd copy` (see `store::copy`).

use rusqlite::types::ValueRef;
use rusqlite::Row;

use super::Store;
use crate::error::Result;
use crate::store::transfer::{
    EndpointCopy, MessageCopy, Value, ATTEMPT_COLUMNS, ENDPOINT_COLUMNS, EVENT_COLUMNS,
    MESSAGE_COLUMNS,
};

/// Columns `from..from + n` of `row`.
fn values(row: &Row<'_>, from: usize, n: usize) -> rusqlite::Result<Vec<Value>> {
    (from..from + n)
        .map(|i| {
            Ok(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            })
        })
        .collect()
}

impl Store {
    /// Every endpoint with its subscriptions.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn export_endpoints(&self) -> Result<Vec<EndpointCopy>> {
        let sql = format!(
            "SELECT id, name, {} FROM endpoints ORDER BY id",
            ENDPOINT_COLUMNS.join(", ")
        );
        let e = |source| self.err("export endpoints", source);
        let mut rows: Vec<(i64, EndpointCopy)> = self
            .conn
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        EndpointCopy {
                            name: r.get(1)?,
                            values: values(r, 2, ENDPOINT_COLUMNS.len())?,
                            subscriptions: Vec::new(),
                        },
                    ))
                })?
                .collect()
            })
            .map_err(e)?;
        let subscriptions: Vec<(i64, String, String)> = self
            .conn
            .prepare("SELECT endpoint, tenant, pattern FROM subscriptions")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(e)?;
        for (id, tenant, pattern) in subscriptions {
            if let Some((_, row)) = rows.iter_mut().find(|(i, _)| *i == id) {
                row.subscriptions.push((tenant, pattern));
            }
        }
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    /// Up to `limit` events after seq `after`, with their seq.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn export_events(&self, after: i64, limit: usize) -> Result<Vec<(i64, Vec<Value>)>> {
        let sql = format!(
            "SELECT seq, {} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            EVENT_COLUMNS.join(", ")
        );
        self.conn
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map((after, limit as i64), |r| {
                    Ok((r.get(0)?, values(r, 1, EVENT_COLUMNS.len())?))
                })?
                .collect()
            })
            .map_err(|e| self.err("export events", e))
    }

    /// Up to `limit` messages after seq `after`, with their requests and attempts.
    ///
    /// # Errors
    /// `Db`/`Busy`.
    pub(crate) fn export_messages(&self, after: i64, limit: usize) -> Result<Vec<MessageCopy>> {
        let sql = format!(
            "SELECT m.seq, e.name, p.method, p.url, p.headers, p.body, {}
             FROM messages m JOIN payloads p ON p.seq = m.seq
             LEFT JOIN endpoints e ON e.id = m.endpoint
             WHERE m.seq > ?1 ORDER BY m.seq LIMIT ?2",
            MESSAGE_COLUMNS
                .iter()
                .map(|c| format!("m.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let e = |source| self.err("export messages", source);
        let mut page: Vec<MessageCopy> = self
            .conn
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map((after, limit as i64), |r| {
                    Ok(MessageCopy {
                        seq: r.get(0)?,
                        endpoint: r.get(1)?,
                        payload: values(r, 2, 4)?,
                        values: values(r, 6, MESSAGE_COLUMNS.len())?,
                        attempts: Vec::new(),
                    })
                })?
                .collect()
            })
            .map_err(e)?;
        let attempts = format!(
            "SELECT seq, {} FROM attempts WHERE seq > ?1 AND seq <= ?2 ORDER BY seq, n",
            ATTEMPT_COLUMNS.join(", ")
        );
        if let (Some(first), Some(last)) = (page.first(), page.last()) {
            let (first, last) = (first.seq, last.seq);
            let rows: Vec<(i64, Vec<Value>)> = self
                .conn
                .prepare(&attempts)
                .and_then(|mut s| {
                    s.query_map((first - 1, last), |r| {
                        Ok((r.get(0)?, values(r, 1, ATTEMPT_COLUMNS.len())?))
                    })?
                    .collect()
                })
                .map_err(e)?;
            for (seq, row) in rows {
                if let Ok(i) = page.binary_search_by_key(&seq, |m| m.seq) {
                    page[i].attempts.push(row);
                }
            }
        }
        Ok(page)
    }
}
