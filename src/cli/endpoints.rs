//! `webhookd endpoints`: list, show and enable any endpoint; add, update, remove, pause, resume
//! and rotate the secrets of endpoints managed at runtime (stored in the database).

use clap::{Args, Subcommand};

use super::Common;

#[derive(Debug, Subcommand)]
pub(crate) enum EndpointsCommand {
    /// List endpoints (configured, managed at runtime, or with messages in the database) with
    /// their health.
    #[command(after_help = "\
Examples:
  webhookd endpoints list
  webhookd endpoints list --json | jq -r '.[] | select(.state != \"healthy\") | .name'")]
    List {
        /// Print a JSON array of objects.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Show one endpoint: policy, health, queue and ordered lanes (never its secrets).
    #[command(after_help = "\
Examples:
  webhookd endpoints show billing
  webhookd endpoints show billing --json | jq .lanes")]
    Show {
        /// The endpoint's name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Enable an endpoint that was disabled (or open): its held messages are delivered again.
    #[command(after_help = "\
Examples:
  webhookd endpoints enable billing")]
    Enable {
        /// The endpoint's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },

    /// Add an endpoint at runtime (stored in the database; a running daemon uses it at once).
    /// Prints its signing secret once: generated unless --secret gives one.
    #[command(after_help = "\
Examples:
  webhookd endpoints add acme-billing --url https://hooks.acme.example/webhooks --tenant acme --event 'invoice.*'
  webhookd endpoints add acme-audit --url https://audit.acme.example/in --tenant acme --event '*' --rate 20/s --json

The secret is stored sealed under secrets.key_file; `webhookd endpoints secret NAME` shows it
again. Endpoints of the config file cannot be added here (a name lives in one place).")]
    Add {
        /// The endpoint's name: 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// The signing secret (whsec_ + base64); generated when not given.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
        /// Print one JSON object (with the secret).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Change an endpoint managed at runtime: only the settings given change. Queued messages
    /// get the new settings at their next attempt.
    #[command(after_help = "\
Examples:
  webhookd endpoints update acme-billing --url https://new.acme.example/webhooks
  webhookd endpoints update acme-billing --event 'invoice.*' --event 'customer.*'
  webhookd endpoints update acme-billing --unset rate --unset timeout")]
    Update {
        /// The endpoint's name.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Return a setting to its default (url cannot be unset): tenant, events, headers,
        /// timeout, max_attempts, concurrency, rate, ordered, on_dead, breaker_failures,
        /// breaker_cooldown, disable_after, allow_private, proxy.
        #[arg(long, value_name = "SETTING")]
        unset: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Remove an endpoint managed at runtime. Refused while it has messages pending, in flight
    /// or waiting, unless --cancel-pending cancels them (in-flight ones when their attempt
    /// ends). Its delivered and dead messages stay.
    #[command(after_help = "\
Examples:
  webhookd endpoints remove acme-billing
  webhookd endpoints remove acme-billing --cancel-pending")]
    Remove {
        /// The endpoint's name.
        name: String,
        /// Cancel its queued messages with it.
        #[arg(long)]
        cancel_pending: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Pause an endpoint (of the config file or the database): its messages stay queued and none
    /// is sent until it is resumed.
    #[command(after_help = "\
Examples:
  webhookd endpoints pause acme-billing")]
    Pause {
        /// The endpoint's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },

    /// Resume a paused endpoint.
    #[command(after_help = "\
Examples:
  webhookd endpoints resume acme-billing")]
    Resume {
        /// The endpoint's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },

    /// Give an endpoint managed at runtime a new signing secret (printed once). The old ones
    /// keep signing beside it for --overlap, so receivers can switch without losing a message.
    #[command(after_help = "\
Examples:
  webhookd endpoints rotate-secret acme-billing
  webhookd endpoints rotate-secret acme-billing --overlap 1h --json")]
    RotateSecret {
        /// The endpoint's name.
        name: String,
        /// How long the old secrets still sign (0s: not at all).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        overlap: String,
        /// The new secret (whsec_ + base64); generated when not given.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
        /// Print one JSON object (with the secret).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Print the signing secrets of an endpoint managed at runtime (newest first), for an
    /// administrator who lost them. Needs the secrets key.
    #[command(after_help = "\
Examples:
  webhookd endpoints secret acme-billing
  webhookd endpoints secret acme-billing --json | jq -r '.[0].secret'")]
    Secret {
        /// The endpoint's name.
        name: String,
        /// Print a JSON array of {secret, until}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// The settings of `endpoints add` and `update` (as in `[endpoints.NAME]`).
#[derive(Debug, Args, Default)]
pub(crate) struct SettingsArgs {
    /// Base URL; a message's path is appended to it.
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// The tenant it belongs to (a customer, an application).
    #[arg(long, value_name = "TENANT")]
    pub(crate) tenant: Option<String>,
    /// An event type it subscribes to (invoice.paid), a prefix (invoice.*) or *; repeat for
    /// several. None: it receives only messages addressed to it by name.
    #[arg(long = "event", value_name = "PATTERN")]
    pub(crate) events: Vec<String>,
    /// A header sent with every message, 'Name: value'; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub(crate) headers: Vec<String>,
    /// Per-attempt timeout (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
    /// Attempts before a message goes to the dead-letter queue.
    #[arg(long, value_name = "N")]
    pub(crate) max_attempts: Option<u32>,
    /// Requests in flight at most (default: half the workers).
    #[arg(long, value_name = "N")]
    pub(crate) concurrency: Option<usize>,
    /// Requests per second or minute at most (e.g. 50/s, 600/m).
    #[arg(long, value_name = "RATE")]
    pub(crate) rate: Option<String>,
    /// Deliver its messages one at a time, in order (--ordered=false to stop).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) ordered: Option<bool>,
    /// What a dead message does to its ordered lane: block or skip.
    #[arg(long, value_name = "WHAT")]
    pub(crate) on_dead: Option<String>,
    /// Consecutive failures that open its circuit breaker.
    #[arg(long, value_name = "N")]
    pub(crate) breaker_failures: Option<u32>,
    /// First wait before probing an open endpoint (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub(crate) breaker_cooldown: Option<String>,
    /// Failing without a success for this long disables it (e.g. 5d).
    #[arg(long, value_name = "DURATION")]
    pub(crate) disable_after: Option<String>,
    /// Let it reach private addresses (loopback, 10/8, 172.16/12, 192.168/16, 100.64/10,
    /// fc00::/7), which the egress policy denies by default.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) allow_private: Option<bool>,
    /// Send its requests through this proxy (http://, https://, socks5://, socks5h://), or
    /// "none" for directly even when http.proxy is set.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
}

impl EndpointsCommand {
    pub(super) fn common(&self) -> &Common {
        match self {
            EndpointsCommand::List { common, .. }
            | EndpointsCommand::Show { common, .. }
            | EndpointsCommand::Enable { common, .. }
            | EndpointsCommand::Add { common, .. }
            | EndpointsCommand::Update { common, .. }
            | EndpointsCommand::Remove { common, .. }
            | EndpointsCommand::Pause { common, .. }
            | EndpointsCommand::Resume { common, .. }
            | EndpointsCommand::RotateSecret { common, .. }
            | EndpointsCommand::Secret { common, .. } => common,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum OriginsCommand {
    /// Origins with an open breaker, failures or messages (all with --all): state, consecutive
    /// failures, last error, pending, in-flight and dead messages.
    #[command(after_help = "\
Examples:
  webhookd origins list
  webhookd origins list --all --json")]
    List {
        /// Every origin the database knows, healthy and idle ones too.
        #[arg(long)]
        all: bool,
        /// Print a JSON array of objects.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

impl OriginsCommand {
    pub(super) fn common(&self) -> &Common {
        match self {
            OriginsCommand::List { common, .. } => common,
        }
    }
}
