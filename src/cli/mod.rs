//! The command-line contract, as clap derive types. Doc comments are the `--help` text; examples
//! are written out in full and never wrapped (every line can be copied into a shell).
//!
//! Only parsing lives here: values are validated into a `Config` (`config`), a `Message`
//! (`ingest`) or a `Filter` by the handlers. The global options (`--config`, `--db`, `-v`, `-q`) work before or
//! after the subcommand, and only on the subcommands they apply to (`verify` and `completions`
//! need no config and have none).

mod endpoints;
mod queue;

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

pub(crate) use endpoints::{EndpointsCommand, OriginsCommand, SettingsArgs};
pub(crate) use queue::{
    BulkArgs, CancelArgs, DlqCommand, DlqDeleteArgs, DlqRetryArgs, FilterArgs, ListArgs,
    ReplayArgs, Selection,
};

const AFTER_HELP: &str = "\
Examples:
  webhookd run
  webhookd enqueue https://example.com/hook -H 'Content-Type: application/json' -d '{\"id\":1}'
  webhookd enqueue --jsonl events.jsonl
  webhookd status
  webhookd list --state dead --since 2h
  webhookd dlq retry --endpoint billing --status 5xx

Environment: WEBHOOKD_CONFIG and WEBHOOKD_DB stand for --config and --db (the options win).

Exit codes: 0 ok, 1 verify: signature does not match (cancel, replay, dlq delete: not
confirmed), 3 status: daemon not running,
64 command line (an unknown option, a missing or invalid argument), 65 bad data (a --jsonl
line, a body file, a message in a state the action does not take, a database of another
format), 66 not found (uuid, endpoint, file, database), 73 cannot create, 74 I/O error,
75 temporary failure (busy, already running), 77 permission denied, 78 configuration error.";

/// Reliable outbound webhook delivery with an embedded SQLite queue.
#[derive(Debug, Parser)]
#[command(
    name = "webhookd",
    version = env!("WEBHOOKD_VERSION"),
    after_help = AFTER_HELP,
    subcommand_help_heading = "Commands"
)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) common: Common,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every command that uses a config and a database takes.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Common {
    /// Config file (TOML; env WEBHOOKD_CONFIG). A named file that does not exist is an error.
    /// Without it /etc/webhookd/webhookd.toml is read if it exists, else built-in defaults apply.
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// Database file (env WEBHOOKD_DB); overrides the config's `db`.
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// More log output (repeat for more: -v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short, long, action = ArgAction::Count)]
    pub(crate) quiet: u8,
}

impl Common {
    /// These options given before the subcommand, completed by those given after it.
    fn merged(&self, after: &Common) -> Common {
        Common {
            config: after.config.clone().or_else(|| self.config.clone()),
            db: after.db.clone().or_else(|| self.db.clone()),
            verbose: self.verbose.saturating_add(after.verbose),
            quiet: self.quiet.saturating_add(after.quiet),
        }
    }

    fn is_set(&self) -> bool {
        self.config.is_some() || self.db.is_some() || self.verbose > 0 || self.quiet > 0
    }
}

impl Cli {
    /// The global options in force: before and after the subcommand.
    pub(crate) fn common(&self) -> Common {
        match self.command.common() {
            Some(after) => self.common.merged(&after),
            None => self.common.clone(),
        }
    }

    /// Global options given to a command that takes none (`verify`, `completions`).
    pub(crate) fn misplaced_options(&self) -> Option<&'static str> {
        (self.command.common().is_none() && self.common.is_set())
            .then_some("--config, --db, -v and -q do not apply to this command")
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Store a message (or an event, fanned out to its subscribers) durably and print its uuid.
    #[command(after_help = "\
Examples:
  webhookd enqueue https://example.com/hook -H 'Content-Type: application/json' -d '{\"event\":\"paid\"}'
  webhookd enqueue https://example.com/hook -d @payload.bin --key order-42 --delay 90s
  webhookd enqueue --endpoint billing --path /v2/invoice -d '{\"id\":42}'
  webhookd enqueue --event invoice.paid --tenant acme -d '{\"invoice\":42}' --key inv-42-paid
  webhookd enqueue --jsonl events.jsonl
  my-producer | webhookd enqueue --jsonl - --stream

JSON lines: one object per line with `url` or `endpoint` (with an optional `path`), and
optionally `method`, `headers` (an object, or a list of {\"name\", \"value\"} objects that keeps
repeated names), `body` (text) or `body_base64`, `key`, `delay` (e.g. \"90s\"), `max_attempts`
and `ordering_key`. Without --stream all lines are stored or none.")]
    Enqueue(EnqueueArgs),

    /// Run the delivery daemon in the foreground, logging to stderr.
    #[command(after_help = "\
Examples:
  webhookd run
  webhookd run --workers 32 --db /var/lib/webhookd/webhookd.db

SIGTERM or SIGINT: stop claiming, let requests in flight finish (at most shutdown_timeout),
record them, exit 0. SIGHUP: re-read the config file and apply workers, retry, http, retention,
shutdown_timeout, log_level, alert_url and endpoints.")]
    Run {
        /// Number of delivery worker threads (overrides the config's `workers`).
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        #[command(flatten)]
        common: Common,
    },

    /// Show whether a daemon runs on this database, and the queue counts.
    #[command(after_help = "\
Examples:
  webhookd status
  webhookd status --json | jq .queue.dead

Exit status 0 if a daemon is running on the database, 3 if not.")]
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Create the database's schema, or upgrade it to this version's (the daemon does it too).
    #[command(after_help = "\
Examples:
  webhookd migrate
  webhookd migrate --db postgres://webhookd@db.example:5432/webhookd?sslmode=require

Migrations run under a lock: several daemons or commands starting at once migrate once. A
database of a newer webhookd is refused (exit 65).")]
    Migrate {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Copy an SQLite queue into PostgreSQL: every message with its request and attempts, the
    /// endpoints (with their sealed secrets) and the events.
    #[command(after_help = "\
Examples:
  webhookd copy --from /var/lib/webhookd/webhookd.db --to postgres://webhookd@db.example/webhookd
  webhookd copy --from old.db --json

Without --to, the configuration's db (a postgres:// URL) is the target; the password comes from
db_password_file or the credential db-password. Stop the daemon on the SQLite file first (a
running one is refused, exit 75); its messages in flight are copied as pending. What the target
already holds (by uuid, endpoint name) is left as it is: running it twice copies nothing twice.
The daemons on PostgreSQL need the same secrets key as the SQLite ones.")]
    Copy {
        /// The SQLite file to copy from (only read).
        #[arg(long, value_name = "PATH")]
        from: std::path::PathBuf,
        /// The PostgreSQL database to copy into (default: the configuration's db).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },

    /// Show one message with its attempts.
    #[command(after_help = "\
Examples:
  webhookd show 0190c6c8-0000-7000-8000-000000000000
  webhookd show 0190c6c8-0000-7000-8000-000000000000 --json | jq '.attempts[-1]'
  webhookd show 0190c6c8-0000-7000-8000-000000000000 --body > body.bin

The uuid is the one enqueue printed, or one from webhookd list.")]
    Show {
        /// The message's uuid.
        uuid: String,
        /// Print one JSON object.
        #[arg(long, conflicts_with = "body")]
        json: bool,
        /// Print only the body, byte for byte when stdout is not a terminal (on a terminal it is
        /// escaped unless --raw).
        #[arg(long)]
        body: bool,
        /// With --body: write the body unescaped even to a terminal.
        #[arg(long, requires = "body")]
        raw: bool,
        #[command(flatten)]
        common: Common,
    },

    /// List messages in any state, newest first, with filters.
    #[command(after_help = "\
Examples:
  webhookd list
  webhookd list --state dead --endpoint billing --since 2h
  webhookd list --state pending --state scheduled --limit 20
  webhookd list --status 5xx --json | jq -r '.messages[].uuid'
  webhookd list --cursor 0190c6c8-0000-7000-8000-000000000000

Without --state: every state but delivered. A page ends with the cursor of the next one.")]
    List(ListArgs),

    /// Cancel messages that are pending, scheduled or waiting (in flight: when the attempt ends).
    #[command(after_help = "\
Examples:
  webhookd cancel 0190c6c8-0000-7000-8000-000000000000
  webhookd cancel --endpoint billing --state scheduled --dry-run
  webhookd cancel --url-prefix https://old.example.com/ --yes

With filters it asks for confirmation on a terminal; otherwise it needs --yes.")]
    Cancel(CancelArgs),

    /// Send delivered (or dead) messages again, with the same uuid and webhook-id.
    #[command(after_help = "\
Examples:
  webhookd replay --endpoint billing --since 2026-11-30T22:00:00Z --until 2026-12-01T02:00:00Z
  webhookd replay --key order-42 --yes
  webhookd replay --state dead --status 5xx --since 1h --dry-run

At least one filter is required. Receivers that drop duplicates by webhook-id drop replays too.
It asks for confirmation on a terminal; otherwise it needs --yes.")]
    Replay(ReplayArgs),

    /// Inspect, edit and re-send dead messages (the dead-letter queue).
    #[command(after_help = "\
Examples:
  webhookd dlq list
  webhookd dlq show 0190c6c8-0000-7000-8000-000000000000
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000 --url https://example.com/new-hook
  webhookd dlq retry --endpoint billing --since 2h --status 5xx
  webhookd dlq delete --all --yes")]
    Dlq(DlqArgs),

    /// Named endpoints: their health, queue and policy; enable, pause or resume one; add,
    /// change and remove endpoints at runtime.
    #[command(after_help = "\
Examples:
  webhookd endpoints list
  webhookd endpoints show billing --json | jq '{state, consecutive_failures, last_error}'
  webhookd endpoints enable billing
  webhookd endpoints add acme-billing --url https://hooks.acme.example/webhooks --tenant acme --event 'invoice.*'")]
    Endpoints(EndpointsArgs),

    /// The origins of plain-URL messages (scheme://host:port): each has a breaker and limits of
    /// its own, so one dead or hanging host cannot hold the workers or burn retries.
    #[command(after_help = "\
Examples:
  webhookd origins list
  webhookd origins list --all --json | jq -r '.[] | select(.state == \"open\") | .origin'")]
    Origins(OriginsArgs),

    /// Check a Standard Webhooks signature, as a receiver would (exit 0 valid, 1 not).
    #[command(after_help = "\
Examples:
  webhookd verify --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --id msg_p5jXN8AQM9LWM0D4loKWxJek --timestamp 1614265330 --signature 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' -d '{\"test\": 2432232314}' --tolerance 0
  webhookd verify --secret-file billing.secret --id \"$ID\" --timestamp \"$TS\" --signature \"$SIG\" -d @body.json

Exit status 0 when one of the signatures was made with one of the secrets (and the timestamp is
within the tolerance), 1 when not.")]
    Verify(VerifyArgs),

    /// Make a token for the API's TCP listener: print it once, and its line for api.tokens_file.
    #[command(after_help = "\
Examples:
  webhookd token billing-service --scope enqueue
  webhookd token grafana --scope read
  webhookd token ops --scope admin --scope enqueue --json

Scopes: enqueue (post messages), read (every GET and /metrics), admin (act on messages and
endpoints; includes read). Only the line's SHA-256 hash of the token goes into the file: keep
the token itself where the client reads it. Add the line to api.tokens_file and reload the
daemon (systemctl reload webhookd).")]
    Token(TokenArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = "\
Examples:
  webhookd completions bash > ~/.local/share/bash-completion/completions/webhookd
  webhookd completions zsh > ~/.zfunc/_webhookd

The .deb installs them for bash, zsh and fish.")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The global options given after the subcommand (for `dlq` and `endpoints`: after it and
    /// after theirs), for commands that take them.
    fn common(&self) -> Option<Common> {
        match self {
            Command::Enqueue(a) => Some(a.common.clone()),
            Command::Run { common, .. }
            | Command::Status { common, .. }
            | Command::Migrate { common, .. }
            | Command::Copy { common, .. }
            | Command::Show { common, .. } => Some(common.clone()),
            Command::List(a) => Some(a.common.clone()),
            Command::Cancel(a) => Some(a.common.clone()),
            Command::Replay(a) => Some(a.common.clone()),
            Command::Dlq(d) => Some(d.common.merged(d.command.common())),
            Command::Endpoints(e) => Some(e.common.merged(e.command.common())),
            Command::Origins(o) => Some(o.common.merged(o.command.common())),
            Command::Verify(_) | Command::Token(_) | Command::Completions { .. } => None,
        }
    }
}

/// `dlq`: its own global options (`webhookd dlq --db PATH list`) and its subcommand.
#[derive(Debug, Args)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    pub(crate) command: DlqCommand,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `origins`: its own global options and its subcommand.
#[derive(Debug, Args)]
pub(crate) struct OriginsArgs {
    #[command(subcommand)]
    pub(crate) command: OriginsCommand,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `endpoints`: its own global options and its subcommand.
#[derive(Debug, Args)]
pub(crate) struct EndpointsArgs {
    #[command(subcommand)]
    pub(crate) command: EndpointsCommand,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// Absolute http:// or https:// URL to deliver to.
    #[arg(
        value_name = "URL",
        required_unless_present_any = ["jsonl", "endpoint", "event"],
        conflicts_with_all = ["jsonl", "endpoint", "event"]
    )]
    pub(crate) url: Option<String>,

    /// Enqueue an event of this type instead of a message: one delivery to every endpoint (of
    /// --tenant) that subscribes to it and is not paused, all carrying the event's id as
    /// webhook-id. Prints the event's id, then each delivery's uuid and endpoint.
    #[arg(long, value_name = "TYPE", conflicts_with_all = ["jsonl", "endpoint", "path", "ordering_key", "headers", "delay", "max_attempts"])]
    pub(crate) event: Option<String>,

    /// With --event: the tenant whose endpoints receive it (none: endpoints without a tenant).
    #[arg(long, value_name = "TENANT", requires = "event")]
    pub(crate) tenant: Option<String>,

    /// Deliver to a named endpoint (of the config's [endpoints.NAME], or added with `endpoints
    /// add`) instead of a URL: its URL, headers, signing secret and delivery policy apply when
    /// the message is sent.
    #[arg(short = 'e', long, value_name = "NAME", conflicts_with = "jsonl")]
    pub(crate) endpoint: Option<String>,

    /// With --endpoint: a path (and query) appended to the endpoint's URL, e.g. /v2/invoice.
    #[arg(long, value_name = "PATH", requires = "endpoint")]
    pub(crate) path: Option<String>,

    /// Deliver one at a time, in enqueue order, with the other messages of the same key (and
    /// endpoint). See ORDERING in webhookd(8).
    #[arg(long, value_name = "KEY", conflicts_with = "jsonl")]
    pub(crate) ordering_key: Option<String>,

    /// HTTP method.
    #[arg(short = 'X', long, value_name = "METHOD", default_value = "POST")]
    pub(crate) method: String,

    /// Request header 'Name: value' (repeatable; a name may repeat).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,

    /// Body: DATA as given, @FILE to read a file, @- to read stdin. Sent byte-for-byte.
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA",
        allow_hyphen_values = true
    )]
    pub(crate) data: Option<String>,

    /// Idempotency key: enqueueing the same key again stores nothing and prints the first uuid.
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,

    /// First attempt not before now + DURATION (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) delay: Option<String>,

    /// Total attempts for this message (overrides the config's retry.max_attempts).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) max_attempts: Option<String>,

    /// Read messages as JSON lines from FILE, or - for stdin. All are stored or none.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["headers", "data", "key", "delay", "max_attempts"])]
    pub(crate) jsonl: Option<String>,

    /// With --jsonl: commit as lines arrive (in small groups) and print each uuid once its group
    /// is durable, for long-running producers. A bad line stops the stream; lines before it stay.
    #[arg(long, requires = "jsonl")]
    pub(crate) stream: bool,

    /// Print a JSON object (per message) instead of the bare uuid.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) common: Common,
}

/// `token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// A name for the token (shown in refusals and logs; no spaces).
    pub(crate) name: String,
    /// What the token may do (repeatable): enqueue, read or admin.
    #[arg(long = "scope", value_name = "SCOPE", required = true, value_parser = ["enqueue", "read", "admin"])]
    pub(crate) scopes: Vec<String>,
    /// Print {"name", "scopes", "token", "line"} as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("secret_source").required(true).multiple(true).args(["secrets", "secret_file"])))]
pub(crate) struct VerifyArgs {
    /// A signing secret (whsec_...; repeatable: valid if any matches).
    #[arg(long = "secret", value_name = "SECRET")]
    pub(crate) secrets: Vec<String>,
    /// A file with one or more secrets, separated by whitespace (instead of or beside --secret).
    #[arg(long, value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,
    /// The webhook-id header.
    #[arg(long, value_name = "ID")]
    pub(crate) id: String,
    /// The webhook-timestamp header (Unix seconds).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timestamp: u64,
    /// The webhook-signature header (one or more space-separated v1,<base64>).
    #[arg(long, value_name = "SIGNATURE")]
    pub(crate) signature: String,
    /// The body exactly as received: DATA, @FILE, or @- for stdin.
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA",
        allow_hyphen_values = true
    )]
    pub(crate) data: String,
    /// Largest accepted distance between the timestamp and now (0: do not check).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub(crate) tolerance: String,
}

#[cfg(test)]
mod tests;
