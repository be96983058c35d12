//! How the domain's enums are written in the database: the one place that maps a message's state
//! and an endpoint's circuit to and from their integer codes. The SQL text of this module's
//! siblings uses the same numbers as literals (a partial index can only be chosen by a query that
//! repeats its condition literally); `literals_match_the_codes` keeps them in step.

use crate::model::{Circuit, State};

pub(in crate::store) const PENDING: i64 = 0;
pub(in crate::store) const IN_FLIGHT: i64 = 1;
pub(in crate::store) const DELIVERED: i64 = 2;
pub(in crate::store) const DEAD: i64 = 3;
/// Waiting behind an earlier message of its ordered lane.
pub(in crate::store) const WAITING: i64 = 4;
/// Cancelled by an operator; kept like a delivered message until retention purges it.
pub(in crate::store) const CANCELLED: i64 = 5;

/// The code of `state`.
pub(in crate::store) fn state_code(state: State) -> i64 {
    match state {
        State::Pending => PENDING,
        State::InFlight => IN_FLIGHT,
        State::Delivered => DELIVERED,
        State::Dead => DEAD,
        State::Waiting => WAITING,
        State::Cancelled => CANCELLED,
    }
}

/// The state of `code`; an unknown code is an error (a newer schema, or a damaged file), never
/// a guess.
pub(super) fn state(code: i64) -> rusqlite::Result<State> {
    state_of(code).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, code))
}

/// A message state read from column `i`.
pub(super) fn state_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<State> {
    state(row.get(i)?)
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, row.get(i).unwrap_or(-1)))
}

/// The code of an endpoint's circuit.
pub(in crate::store) fn circuit_code(c: Circuit) -> i64 {
    match c {
        Circuit::Closed => 0,
        Circuit::Open => 1,
        Circuit::Disabled => 2,
    }
}

/// The circuit of `code`, if it is one.
pub(in crate::store) fn circuit_of(code: i64) -> Option<Circuit> {
    [Circuit::Closed, Circuit::Open, Circuit::Disabled]
        .into_iter()
        .find(|c| circuit_code(*c) == code)
}

/// The state of `code`, if it is one.
pub(in crate::store) fn state_of(code: i64) -> Option<State> {
    State::ALL.into_iter().find(|s| state_code(*s) == code)
}

/// An endpoint's circuit read from column `i`.
pub(super) fn circuit_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Circuit> {
    let code: i64 = row.get(i)?;
    circuit_of(code).ok_or(rusqlite::Error::IntegralValueOutOfRange(i, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in State::ALL {
            assert_eq!(state(state_code(s)).unwrap(), s);
        }
        assert!(state(9).is_err(), "an unknown code is refused, not guessed");
    }

    /// The literal codes in the SQL of the store are these.
    #[test]
    fn literals_match_the_codes() {
        assert_eq!(
            [PENDING, IN_FLIGHT, DELIVERED, DEAD, WAITING, CANCELLED],
            [0, 1, 2, 3, 4, 5]
        );
        let partial = "state NOT IN (1, 2)";
        assert!(super::super::schema::MIGRATIONS[4].contains(partial));
        assert_eq!((IN_FLIGHT, DELIVERED), (1, 2), "{partial}");
    }
}
