//! Writing a copied queue in (`webhookd copy`, see `store::copy`): each page in one transaction,
//! each row `ON CONFLICT DO NOTHING`, so a second run stores nothing twice. A message that was in
//! flight in the SQLite file is pending here (no daemon owns it), or cancelled if an operator had
//! asked for that.

use postgres::types::ToSql;
use postgres::GenericClient;

use super::{Fail, Store, R};
use crate::error::Result;
use crate::store::transfer::{
    EndpointCopy, MessageCopy, Value, ATTEMPT_COLUMNS, ENDPOINT_COLUMNS, EVENT_COLUMNS,
    MESSAGE_COLUMNS,
};

/// The PostgreSQL type of each column of the lists in `store::copy`: `i` bigint, `t` text,
/// `b` bytea.
const ENDPOINT_KINDS: &str = "iiiitiitittbiii";
const EVENT_KINDS: &str = "btttii";
const MESSAGE_KINDS: &str = "btiiiiiiiiittiiib";
const ATTEMPT_KINDS: &str = "iiiitb";
const PAYLOAD_KINDS: &str = "tttb";

type Param = Box<dyn ToSql + Sync>;

/// `values` as parameters of the types `kinds` names.
fn params(values: &[Value], kinds: &str) -> R<Vec<Param>> {
    values
        .iter()
        .zip(kinds.chars())
        .map(|(v, k)| -> R<Param> {
            Ok(match (k, v) {
                ('i', Value::Null) => Box::new(None::<i64>),
                ('t', Value::Null) => Box::new(None::<String>),
                ('b', Value::Null) => Box::new(None::<Vec<u8>>),
                ('i', Value::Int(n)) => Box::new(*n),
                ('t', Value::Text(t)) => Box::new(t.clone()),
                ('b', Value::Blob(b)) => Box::new(b.clone()),
                ('b', Value::Text(t)) => Box::new(t.as_bytes().to_vec()),
                ('t', Value::Blob(b)) => Box::new(String::from_utf8_lossy(b).into_owned()),
                (k, v) => return Err(Fail::Bad(format!("cannot copy {v:?} into a {k} column"))),
            })
        })
        .collect()
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// `INSERT INTO table (columns) VALUES ($1...) ON CONFLICT DO NOTHING` with `extra` more leading
/// columns.
fn insert_sql(table: &str, extra: &[&str], columns: &[&str], returning: &str) -> String {
    let all: Vec<&str> = extra.iter().chain(columns).copied().collect();
    let marks: Vec<String> = (1..=all.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING {returning}",
        all.join(", "),
        marks.join(", ")
    )
}

impl Store {
    /// Stores the endpoints the database does not know yet (by name), with their
    /// subscriptions; returns how many.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn import_endpoints(&self, rows: &[EndpointCopy]) -> Result<u64> {
        let sql = insert_sql("endpoints", &["name"], ENDPOINT_COLUMNS, "RETURNING id");
        self.tx("copy endpoints", |tx| {
            let mut added = 0;
            for row in rows {
                let mut p: Vec<Param> = vec![Box::new(row.name.clone())];
                p.extend(params(&row.values, ENDPOINT_KINDS)?);
                if tx.query_opt(&sql, &refs(&p))?.is_some() {
                    added += 1;
                }
                let id = super::endpoints::endpoint_id(tx, &row.name)?;
                for (tenant, pattern) in &row.subscriptions {
                    tx.execute(
                        "INSERT INTO subscriptions (tenant, pattern, endpoint) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[tenant, pattern, &id],
                    )?;
                }
            }
            if added > 0 {
                // The daemons read the definitions changed after the generation they hold.
                tx.execute(
                    "UPDATE generations SET n = n + 1 WHERE what = 'endpoints'",
                    &[],
                )?;
                tx.execute(
                    "UPDATE endpoints SET changed_gen =
                        (SELECT n FROM generations WHERE what = 'endpoints')
                     WHERE definition IS NOT NULL OR paused <> 0",
                    &[],
                )?;
            }
            Ok(added)
        })
    }

    /// Stores the events the database does not hold yet; returns how many.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn import_events(&self, rows: &[Vec<Value>]) -> Result<u64> {
        let sql = insert_sql("events", &[], EVENT_COLUMNS, "");
        self.tx("copy events", |tx| {
            let mut added = 0;
            for row in rows {
                added += tx.execute(&sql, &refs(&params(row, EVENT_KINDS)?))?;
            }
            Ok(added)
        })
    }

    /// Stores the messages the database does not hold yet (by uuid), with their requests and
    /// attempts; returns how many messages and attempts.
    ///
    /// # Errors
    /// `Db`/`Busy`/`DbUnavailable`.
    pub(crate) fn import_messages(&self, page: &[MessageCopy]) -> Result<(u64, u64)> {
        let message = insert_sql("messages", &["endpoint"], MESSAGE_COLUMNS, "RETURNING seq");
        let payload = insert_sql(
            "payloads",
            &["seq"],
            &["method", "url", "headers", "body"],
            "",
        );
        let attempt = insert_sql("attempts", &["seq"], ATTEMPT_COLUMNS, "");
        let now = crate::time::now_ms();
        self.tx("copy messages", |tx| {
            let (mut messages, mut attempts) = (0, 0);
            for m in page {
                let endpoint = match &m.endpoint {
                    Some(name) => super::endpoints::endpoint_id(tx, name)?,
                    None => 0,
                };
                let mut values = m.values.clone();
                unclaim(&mut values, now);
                let mut p: Vec<Param> = vec![Box::new(endpoint)];
                p.extend(params(&values, MESSAGE_KINDS)?);
                let Some(row) = tx.query_opt(&message, &refs(&p))? else {
                    continue; // already there (a second run), or its key is taken
                };
                let seq: i64 = row.try_get(0)?;
                messages += 1;
                insert_with_seq(tx, &payload, seq, &m.payload, PAYLOAD_KINDS)?;
                for a in &m.attempts {
                    insert_with_seq(tx, &attempt, seq, a, ATTEMPT_KINDS)?;
                    attempts += 1;
                }
            }
            Ok((messages, attempts))
        })
    }
}

fn insert_with_seq(
    tx: &mut impl GenericClient,
    sql: &str,
    seq: i64,
    values: &[Value],
    kinds: &str,
) -> R<()> {
    let mut p: Vec<Param> = vec![Box::new(seq)];
    p.extend(params(values, kinds)?);
    tx.execute(sql, &refs(&p))?;
    Ok(())
}

/// A message in flight in the SQLite file has no owner here: pending again (its attempt was
/// never recorded), or cancelled if an operator asked for that meanwhile.
fn unclaim(values: &mut [Value], now: i64) {
    let at = |name: &str| {
        MESSAGE_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("a column")
    };
    if values[at("state")] != Value::Int(1) {
        return;
    }
    if matches!(values[at("cancel_requested")], Value::Int(n) if n != 0) {
        values[at("state")] = Value::Int(5);
        values[at("cancelled_at")] = Value::Int(now);
        values[at("due_at")] = Value::Int(now);
        values[at("cancel_requested")] = Value::Int(0);
    } else {
        values[at("state")] = Value::Int(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copied_column_has_its_type() {
        for (columns, kinds) in [
            (ENDPOINT_COLUMNS, ENDPOINT_KINDS),
            (EVENT_COLUMNS, EVENT_KINDS),
            (MESSAGE_COLUMNS, MESSAGE_KINDS),
            (ATTEMPT_COLUMNS, ATTEMPT_KINDS),
        ] {
            assert_eq!(columns.len(), kinds.len(), "{columns:?}");
            for (c, k) in columns.iter().zip(kinds.chars()) {
                let text = [
                    "last_error",
                    "reason",
                    "definition",
                    "tenant",
                    "type",
                    "idem_key",
                ];
                let expected = match *c {
                    "uuid" | "event" | "secrets" | "response" => 'b',
                    "lane" | "error" => 't',
                    c if text.contains(&c) => 't',
                    _ => 'i',
                };
                assert_eq!(k, expected, "{c}");
            }
        }
    }
}
