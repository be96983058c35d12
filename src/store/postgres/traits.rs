//! The store's interfaces (`store::Queue`, `store::Admin`, `store::Inserter`) for the PostgreSQL
//! store: each method is the `Store`'s own, in the file of its concept.

use uuid::Uuid;

use super::insert::Inserter as PgInserter;
use super::Store;
use crate::error::Result;
use crate::filter::{Filter, StateName};
use crate::message::Message;
use crate::model::{Health, State};
use crate::store::{
    Action, Admin, Attempt, Claimed, Counts, Cycle, DaemonInfo, DefinedRow, Definition, Done,
    EndpointRow, Enqueued, EventRecord, EventStored, EventView, Found, Inserter, Lane, MessageView,
    Pending, Query, Queue,
};

impl Queue for Store {
    fn cycle(&mut self, c: &Cycle<'_>, now: i64) -> Result<Claimed> {
        Store::cycle(self, c, now)
    }

    fn take_over(&mut self, now: i64) -> Result<usize> {
        // Other daemons may run: only the claims whose lease expired are a dead daemon's.
        Store::take_over_expired(self, now)
    }

    fn abandon(&mut self, now: i64) -> Result<usize> {
        Store::abandon(self, now)
    }

    fn renew(&mut self, until: i64) -> Result<usize> {
        Store::renew(self, until)
    }

    fn purge(&mut self, before: i64, limit: usize) -> Result<usize> {
        Store::purge_delivered(self, before, limit)
    }

    fn next_due(&self, endpoint: i64) -> Result<Option<i64>> {
        Store::next_due(self, endpoint)
    }

    fn totals(&self) -> Result<Counts> {
        Store::totals(self)
    }

    fn endpoint_health(&self) -> Result<Vec<(String, Health)>> {
        Store::endpoint_health(self)
    }

    fn ensure_endpoints(&mut self, names: &[String]) -> Result<()> {
        Store::ensure_endpoints(self, names)
    }

    fn changed(&mut self) -> Result<bool> {
        // Other processes' commits are notified (`coord`), and looked for every few seconds.
        Ok(false)
    }

    fn pending_endpoints(&self, after: Option<i64>) -> Result<Pending> {
        Store::pending_endpoints(self, after)
    }

    fn endpoint_health_after(&self, id: i64) -> Result<Vec<(String, Health)>> {
        Store::endpoint_health_after(self, id)
    }

    fn claims_per_worker(&self) -> usize {
        // Measured (BENCHMARKS.md, PostgreSQL): a drain of 200,000 with 16 workers went from
        // about 2,000-2,600/s with 2 to 7,600/s with 8: the workers no longer wait for the
        // cycle's round trips.
        8
    }

    fn health_changes(&self, after: i64) -> Result<Vec<Health>> {
        Store::health_changes(self, after)
    }

    fn definitions(&self) -> Result<Vec<DefinedRow>> {
        Store::definitions(self)
    }

    fn definitions_since(&self, generation: i64) -> Result<Vec<DefinedRow>> {
        Store::definitions_since(self, generation)
    }

    fn generation(&self) -> Result<i64> {
        Store::generation(self)
    }
}

impl Inserter for PgInserter<'_> {
    fn insert(&mut self, m: &Message, now: i64) -> Result<Enqueued> {
        PgInserter::insert(self, m, now)
    }

    fn event(&mut self, e: &EventRecord, now: i64) -> Result<EventStored> {
        PgInserter::event(self, e, now)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        PgInserter::commit(*self)
    }
}

impl Admin for Store {
    fn inserter(&mut self) -> Result<Box<dyn Inserter + '_>> {
        Ok(Box::new(Store::inserter(self)?))
    }

    fn view(&self, uuid: &Uuid) -> Result<MessageView> {
        Store::view(self, uuid)
    }

    fn summary(&self, seq: i64) -> Result<Option<MessageView>> {
        Store::summary(self, seq)
    }

    fn snapshot(&self) -> Result<()> {
        Store::snapshot(self)
    }

    fn end_snapshot(&self) -> Result<()> {
        Store::end_snapshot(self)
    }

    fn oldest_pending(&self) -> Result<Vec<(String, i64)>> {
        Store::oldest_pending(self)
    }

    fn oldest_pending_overall(&self) -> Result<Option<i64>> {
        Store::oldest_pending_overall(self)
    }

    fn query<'f>(&self, filter: &'f Filter, states: &[StateName], now: i64) -> Result<Query<'f>> {
        Store::query(self, filter, states, now)
    }

    fn find(&self, q: &Query<'_>, cursor: Option<Uuid>, limit: usize) -> Result<Vec<Found>> {
        Store::find(self, q, cursor, limit)
    }

    fn act_on(&mut self, action: Action<'_>, uuids: &[Uuid], now: i64) -> Result<Done> {
        Store::act_on(self, action, uuids, now)
    }

    fn act_batch(
        &mut self,
        action: Action<'_>,
        q: &Query<'_>,
        cursor: Option<Uuid>,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<Found>, Done)> {
        Store::act_batch(self, action, q, cursor, limit, now)
    }

    fn selects_endpoint_messages(&self, q: &Query<'_>) -> Result<Option<Uuid>> {
        Store::selects_endpoint_messages(self, q)
    }

    fn counts(&self, now: i64) -> Result<Counts> {
        Store::counts(self, now)
    }

    fn endpoint_health(&self) -> Result<Vec<(String, Health)>> {
        Store::endpoint_health(self)
    }

    fn endpoint_rows(&self) -> Result<Vec<EndpointRow>> {
        Store::endpoint_rows(self)
    }

    fn lanes(&self, id: i64) -> Result<Vec<Lane>> {
        Store::lanes(self, id)
    }

    fn find_endpoint(&self, name: &str) -> Result<Option<i64>> {
        Store::find_endpoint(self, name)
    }

    fn recent_attempts(&self, id: i64, limit: usize) -> Result<Vec<(Uuid, State, Attempt)>> {
        Store::recent_attempts(self, id, limit)
    }

    fn request_enable(&mut self, name: &str, now: i64) -> Result<bool> {
        Store::request_enable(self, name, now)
    }

    fn ensure_endpoints(&mut self, names: &[String]) -> Result<()> {
        Store::ensure_endpoints(self, names)
    }

    fn definitions(&self) -> Result<Vec<DefinedRow>> {
        Store::definitions(self)
    }

    fn definition(&self, name: &str) -> Result<Option<DefinedRow>> {
        Store::definition(self, name)
    }

    fn define(&mut self, d: &Definition<'_>, create: bool, now: i64) -> Result<()> {
        Store::define(self, d, create, now)
    }

    fn undefine(&mut self, name: &str, cancel_pending: bool, now: i64) -> Result<u64> {
        Store::undefine(self, name, cancel_pending, now)
    }

    fn set_paused(&mut self, name: &str, paused: bool) -> Result<()> {
        Store::set_paused(self, name, paused)
    }

    fn set_secrets(&mut self, name: &str, sealed: &[u8], now: i64) -> Result<()> {
        Store::set_secrets(self, name, sealed, now)
    }

    fn subscribers(&self, tenant: &str, patterns: &[String]) -> Result<Vec<String>> {
        Store::subscribers(self, tenant, patterns)
    }

    fn event_view(&self, id: &Uuid) -> Result<Option<EventView>> {
        Store::event_view(self, id)
    }

    fn daemons(&self) -> Result<Vec<DaemonInfo>> {
        Ok(super::registry::daemons(self)?
            .into_iter()
            .map(|d| DaemonInfo {
                instance: Some(d.instance),
                host: d.host,
                pid: u32::try_from(d.pid).ok(),
                started_at: Some(d.started_at),
                seen_at: Some(d.seen_at),
            })
            .collect())
    }
}
