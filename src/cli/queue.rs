//! The commands that find and act on queued messages: `list`, `cancel`, `replay` and `dlq`, with
//! the filters they share (`FilterArgs`).

use clap::{Args, Subcommand};

use super::Common;

/// Which messages: every filter narrows the selection.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Filters")]
pub(crate) struct FilterArgs {
    /// pending, scheduled (pending, due later), in_flight, waiting, delivered, dead or cancelled
    /// (repeatable).
    #[arg(long = "state", value_name = "STATE")]
    pub(crate) states: Vec<String>,

    /// Messages of this named endpoint.
    #[arg(long, value_name = "NAME")]
    pub(crate) endpoint: Option<String>,

    /// Plain-URL messages whose URL starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    pub(crate) url_prefix: Option<String>,

    /// The message with this idempotency key.
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,

    /// Created at or after T: RFC 3339 (2026-12-01T10:00:00Z) or a duration ago (2h, 7d).
    #[arg(long, value_name = "T")]
    pub(crate) since: Option<String>,

    /// Created before T (as for --since).
    #[arg(long, value_name = "T")]
    pub(crate) until: Option<String>,

    /// The last attempt's HTTP status: a code (503) or a class (4xx, 5xx).
    #[arg(long, value_name = "STATUS")]
    pub(crate) status: Option<String>,

    /// Text in the last attempt's error or response excerpt (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub(crate) error: Option<String>,

    /// Deliveries of events of this type (enqueue --event).
    #[arg(long, value_name = "TYPE")]
    pub(crate) event: Option<String>,

    /// Messages of the endpoints of this tenant.
    #[arg(long, value_name = "TENANT")]
    pub(crate) tenant: Option<String>,
}

impl FilterArgs {
    /// Whether any filter is given.
    pub(crate) fn is_given(&self) -> bool {
        !self.states.is_empty()
            || self.endpoint.is_some()
            || self.url_prefix.is_some()
            || self.key.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.status.is_some()
            || self.error.is_some()
            || self.event.is_some()
            || self.tenant.is_some()
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,

    /// At most N messages (1..=10000).
    #[arg(long, value_name = "N", default_value = "50")]
    pub(crate) limit: String,

    /// Start after this message: the cursor a previous page ended with.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) cursor: Option<String>,

    /// Print one JSON object: {"messages": [...], "next_cursor": ...}.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) common: Common,
}

/// Options of every bulk command.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BulkArgs {
    /// Only count (and with --json list) the messages that would change; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Print one JSON object: matched, changed and their uuids.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// Uuids of messages to cancel (instead of filters).
    #[arg(value_name = "UUID", conflicts_with = "FilterArgs")]
    pub(crate) uuids: Vec<String>,

    #[command(flatten)]
    pub(crate) filter: FilterArgs,

    #[command(flatten)]
    pub(crate) bulk: BulkArgs,

    /// Do not ask for confirmation (required with filters when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,

    #[command(flatten)]
    pub(crate) bulk: BulkArgs,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead messages: uuid, url, attempts, last error, dead since.
    #[command(after_help = "\
Examples:
  webhookd dlq list
  webhookd dlq list --endpoint billing --since 1d
  webhookd dlq list --json | jq -r '.[].uuid'")]
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print a JSON array of objects.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Show one dead message in full, with its last error.
    #[command(after_help = "\
Examples:
  webhookd dlq show 0190c6c8-0000-7000-8000-000000000000")]
    Show {
        /// The message's uuid.
        uuid: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Move dead messages back to pending with a fresh attempt budget, optionally edited first.
    #[command(after_help = "\
Examples:
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000
  webhookd dlq retry --all
  webhookd dlq retry --endpoint billing --since 2h --status 5xx
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000 --url https://example.com/v2/hook -H 'Authorization: Bearer new-token' --remove-header X-Old -d @fixed.json")]
    Retry(DlqRetryArgs),

    /// Delete dead messages for good.
    #[command(after_help = "\
Examples:
  webhookd dlq delete 0190c6c8-0000-7000-8000-000000000000
  webhookd dlq delete --endpoint billing --until 7d --dry-run
  webhookd dlq delete --all --yes

With --all or filters it asks for confirmation on a terminal; otherwise it needs --yes.")]
    Delete(DlqDeleteArgs),
}

impl DlqCommand {
    pub(super) fn common(&self) -> &Common {
        match self {
            DlqCommand::List { common, .. } | DlqCommand::Show { common, .. } => common,
            DlqCommand::Retry(a) => &a.common,
            DlqCommand::Delete(a) => &a.common,
        }
    }
}

/// Which dead messages a DLQ action applies to: uuids, `--all`, or filters.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// Uuids of dead messages.
    #[arg(value_name = "UUID", conflicts_with_all = ["all", "FilterArgs"])]
    pub(crate) uuids: Vec<String>,
    /// Every dead message.
    #[arg(long, conflicts_with = "FilterArgs")]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DlqRetryArgs {
    #[command(flatten)]
    pub(crate) select: Selection,

    /// Send to this URL instead (not for a message of a named endpoint: change the endpoint).
    #[arg(long, value_name = "URL", help_heading = "Edits")]
    pub(crate) url: Option<String>,

    /// Add or replace a header 'Name: value' (repeatable).
    #[arg(
        short = 'H',
        long = "header",
        value_name = "HEADER",
        help_heading = "Edits"
    )]
    pub(crate) headers: Vec<String>,

    /// Remove a header by name (repeatable).
    #[arg(long = "remove-header", value_name = "NAME", help_heading = "Edits")]
    pub(crate) remove_headers: Vec<String>,

    /// Replace the body: DATA, @FILE, or @- for stdin.
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA",
        allow_hyphen_values = true,
        help_heading = "Edits"
    )]
    pub(crate) data: Option<String>,

    #[command(flatten)]
    pub(crate) bulk: BulkArgs,

    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Args)]
pub(crate) struct DlqDeleteArgs {
    #[command(flatten)]
    pub(crate) select: Selection,

    #[command(flatten)]
    pub(crate) bulk: BulkArgs,

    /// Do not ask for confirmation (required with --all or filters when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    #[command(flatten)]
    pub(crate) common: Common,
}
