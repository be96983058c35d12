//! The bulk commands: `cancel`, `replay`, `dlq retry`, `dlq delete`. Named uuids are acted on
//! all or none; filters in batches, each its own short transaction, so the daemon keeps
//! delivering meanwhile (`ops::bulk`, which the API runs too). Every run says how many messages matched and
//! how many changed; `--dry-run` only counts. Destructive actions on filters ask first (or need
//! `--yes` when stdin is not a terminal); progress goes to stderr when it is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use super::{out, read_body};
use crate::check;
use crate::cli::{BulkArgs, CancelArgs, DlqDeleteArgs, DlqRetryArgs, ReplayArgs, Selection};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::filter::{Filter, StateName};
use crate::ops::{self, bulk::Bulk};
use crate::store::{self, parse_uuid, Action, RetryEdit};
use crate::text::count;
use crate::view::BulkJson;

/// What a bulk command does, and to what.
struct Plan<'a> {
    /// The action's name in JSON reports.
    name: &'static str,
    /// The command, as prompts and errors name it.
    command: &'static str,
    past: &'static str,
    action: Action<'a>,
    /// Asks for confirmation when acting on filters.
    destructive: bool,
}

enum Target {
    Uuids(Vec<Uuid>),
    Filter(Box<Filter>, Vec<StateName>),
}

/// `cancel UUID... | FILTERS`.
///
/// # Errors
/// `Usage`, `NoSuchMessage`, `WrongState`, store errors.
pub(crate) fn cancel(config: &Config, args: &CancelArgs) -> Result<u8> {
    let target = if args.uuids.is_empty() {
        if !args.filter.is_given() {
            return Err(usage(
                "name messages by uuid, or select them with filters (e.g. --endpoint, --since)",
            ));
        }
        let f = super::filter(&args.filter, crate::time::now_ms())?;
        let states = f
            .states_within(
                &[StateName::Pending, StateName::Waiting, StateName::InFlight],
                &[
                    StateName::Pending,
                    StateName::Scheduled,
                    StateName::Waiting,
                    StateName::InFlight,
                ],
            )
            .map_err(|message| Error::Usage { message })?;
        Target::Filter(Box::new(f), states)
    } else {
        Target::Uuids(uuids(&args.uuids)?)
    };
    let plan = Plan {
        name: "cancel",
        command: "cancel",
        past: "cancelled",
        action: Action::Cancel,
        destructive: true,
    };
    run(config, &plan, target, &args.bulk, args.yes)
}

/// `replay FILTERS`.
///
/// # Errors
/// `Usage` (no filter), store errors.
pub(crate) fn replay(config: &Config, args: &ReplayArgs) -> Result<u8> {
    if !args.filter.is_given() {
        return Err(usage(
            "replay needs at least one filter (e.g. --endpoint, --since, --key, --state)",
        ));
    }
    let f = super::filter(&args.filter, crate::time::now_ms())?;
    let states = f
        .states_within(
            &[StateName::Delivered, StateName::Dead],
            &[StateName::Delivered, StateName::Dead, StateName::Cancelled],
        )
        .map_err(|message| Error::Usage { message })?;
    let plan = Plan {
        name: "replay",
        command: "replay",
        past: "replayed",
        action: Action::Replay,
        // Receivers get every selected message again: asked for, like a cancel.
        destructive: true,
    };
    run(
        config,
        &plan,
        Target::Filter(Box::new(f), states),
        &args.bulk,
        args.yes,
    )
}

/// `dlq retry (UUID... | --all | FILTERS) [edits]`.
///
/// # Errors
/// `Usage` for a bad edit, `NoSuchMessage`/`NotDead` (nothing changes), store errors.
pub(crate) fn dlq_retry(config: &Config, args: &DlqRetryArgs) -> Result<u8> {
    if let Some(u) = &args.url {
        check::url("--url", u).map_err(|e| usage(&e.to_string()))?;
    }
    let edit = RetryEdit {
        url: args.url.clone(),
        set_headers: args
            .headers
            .iter()
            .map(|h| check::header_arg("-H", h).map_err(|e| usage(&e.to_string())))
            .collect::<Result<_>>()?,
        remove_headers: args.remove_headers.clone(),
        body: args
            .data
            .as_deref()
            .map(|d| read_body(d, config.max_body_size))
            .transpose()?,
    };
    let target = dead_target(&args.select)?;
    let plan = Plan {
        name: "retry",
        command: "dlq retry",
        past: "retried",
        action: Action::Retry(&edit),
        destructive: false,
    };
    run(config, &plan, target, &args.bulk, true)
}

/// `dlq delete (UUID... | --all | FILTERS)`.
///
/// # Errors
/// `NoSuchMessage`/`NotDead` (nothing changes), `Usage`, store errors.
pub(crate) fn dlq_delete(config: &Config, args: &DlqDeleteArgs) -> Result<u8> {
    let target = dead_target(&args.select)?;
    let plan = Plan {
        name: "delete",
        command: "dlq delete",
        past: "deleted",
        action: Action::Delete,
        destructive: true,
    };
    run(config, &plan, target, &args.bulk, args.yes)
}

fn dead_target(select: &Selection) -> Result<Target> {
    if !select.uuids.is_empty() {
        return Ok(Target::Uuids(uuids(&select.uuids)?));
    }
    if !select.all && !select.filter.is_given() {
        return Err(usage(
            "name dead messages by uuid, or use --all, or select them with filters",
        ));
    }
    let f = super::filter(&select.filter, crate::time::now_ms())?;
    let states = f
        .states_within(&[StateName::Dead], &[StateName::Dead])
        .map_err(|message| Error::Usage { message })?;
    Ok(Target::Filter(Box::new(f), states))
}

fn uuids(args: &[String]) -> Result<Vec<Uuid>> {
    args.iter().map(|u| parse_uuid(u)).collect()
}

fn usage(message: &str) -> Error {
    Error::Usage {
        message: message.to_owned(),
    }
}

fn run(config: &Config, plan: &Plan<'_>, target: Target, bulk: &BulkArgs, yes: bool) -> Result<u8> {
    let report = match target {
        Target::Uuids(uuids) => on_uuids(config, plan, &uuids, bulk.dry_run)?,
        Target::Filter(f, states) => on_filter(config, plan, &f, &states, bulk.dry_run, yes)?,
    };
    if bulk.json {
        out(serde_json::to_string(&report).expect("a report serializes"))?;
    } else {
        out(human(plan, &report))?;
    }
    Ok(exit::OK)
}

fn human(plan: &Plan<'_>, r: &BulkJson) -> String {
    if r.dry_run {
        return format!(
            "dry run: {} {}; {} would be {}",
            count(r.matched, "message"),
            if r.matched == 1 { "matches" } else { "match" },
            r.changed,
            plan.past
        );
    }
    let mut text = format!(
        "{} {} of {}",
        plan.past,
        r.changed,
        count(r.matched, "matching message")
    );
    if r.cancel_requested > 0 {
        text.push_str(&format!(
            "; {} in flight will be cancelled when {} attempt ends",
            r.cancel_requested,
            if r.cancel_requested == 1 {
                "its"
            } else {
                "their"
            }
        ));
    }
    text
}

fn bulk<'a>(plan: &Plan<'a>) -> Bulk<'a> {
    Bulk {
        name: plan.name,
        action: plan.action,
    }
}

fn on_uuids(config: &Config, plan: &Plan<'_>, uuids: &[Uuid], dry_run: bool) -> Result<BulkJson> {
    let wake = || store::coordination(&config.db).notify(store::Notice::Requeued);
    ops::bulk::on_uuids(config, &bulk(plan), uuids, dry_run, &wake)
}

fn on_filter(
    config: &Config,
    plan: &Plan<'_>,
    f: &Filter,
    states: &[StateName],
    dry_run: bool,
    yes: bool,
) -> Result<BulkJson> {
    let b = bulk(plan);
    let mut selected = ops::bulk::select(config, &b, f, states, dry_run)?;
    let interactive = std::io::stderr().is_terminal();
    let confirm = plan.destructive && !yes;
    let counted = if dry_run || confirm || interactive {
        let report = selected.count(&b, dry_run)?;
        if dry_run {
            return Ok(report);
        }
        report.matched
    } else {
        0
    };
    if confirm {
        ask(plan, counted)?;
    }
    let progress = if interactive && counted > 0 {
        let bar = ProgressBar::with_draw_target(Some(counted), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} (about {eta} left)")
                .expect("a valid template"),
        );
        bar.set_message(plan.past);
        Some(bar)
    } else {
        None
    };
    let wake = || store::coordination(&config.db).notify(store::Notice::Requeued);
    let advance = |n: u64| {
        if let Some(bar) = &progress {
            bar.inc(n);
        }
    };
    let report = selected.act(&b, &advance, &wake)?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(report)
}

/// Asks on the terminal; without one, refuses (the caller needs `--yes`).
fn ask(plan: &Plan<'_>, matched: u64) -> Result<()> {
    if matched == 0 {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(&format!(
            "{} would change {}: add --yes to confirm (stdin is not a terminal to ask on); --dry-run --json lists them",
            plan.command,
            count(matched, "message")
        )));
    }
    eprint!("{} {}? [y/N] ", plan.command, count(matched, "message"));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|source| Error::ReadInput {
            what: "stdin".into(),
            source,
        })?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Error::Aborted {
            what: plan.command.to_owned(),
        })
    }
}
