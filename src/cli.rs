//! The command-line contract, as clap derive types. Doc comments are the `--help` text.
//!
//! Only parsing lives here: values are validated into a `Config` (config.rs) or a `message::Draft`
//! by the handlers. Global options work before or after the subcommand.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  webhookd run
  webhookd enqueue https://example.com/hook -H 'Content-Type: application/json' -d '{\"id\":1}'
  webhookd enqueue --jsonl events.jsonl
  webhookd status
  webhookd dlq list
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000 --url https://example.com/new-hook

Exit codes: 0 ok, 2 usage, 3 status: daemon not running, 64 usage, 65 bad input data,
66 no such input (file, uuid, database), 73 cannot create, 74 I/O error, 75 temporary failure
(busy, already running), 77 permission denied, 78 configuration error.";

/// Reliable outbound webhook delivery with an embedded SQLite queue.
#[derive(Debug, Parser)]
#[command(name = "webhookd", version = env!("WEBHOOKD_VERSION"), after_help = AFTER_HELP, max_term_width = 100)]
pub(crate) struct Cli {
    /// Config file (TOML). A named file that does not exist is an error. Without this option
    /// /etc/webhookd/webhookd.toml is read if it exists, else built-in defaults apply.
    #[arg(long, global = true, value_name = "PATH", env = "WEBHOOKD_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// Database file; overrides the config's `db`.
    #[arg(long, global = true, value_name = "PATH", env = "WEBHOOKD_DB")]
    pub(crate) db: Option<PathBuf>,

    /// More log output (repeat for more: -v debug, -vv trace).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub(crate) quiet: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Store a message durably and print its uuid.
    #[command(after_help = "\
Examples:
  webhookd enqueue https://example.com/hook -d '{\"event\":\"paid\"}' -H 'Content-Type: application/json'
  webhookd enqueue https://example.com/hook -d @payload.bin --key order-42 --delay 90s
  some-producer | webhookd enqueue --jsonl -

JSON lines: one object per line with `url` (required), `method`, `headers` (object), `body` (string)
or `body_base64`, `key`, `delay` (e.g. \"90s\") and `max_attempts`. All lines are stored or none.")]
    Enqueue(EnqueueArgs),

    /// Run the delivery daemon in the foreground, logging to stderr.
    #[command(after_help = "\
Examples:
  webhookd run
  webhookd run --workers 32 --db /var/lib/webhookd/webhookd.db

SIGTERM or SIGINT: stop claiming, let requests in flight finish, record them, exit 0.
SIGHUP: re-read the config file and apply workers, retry, http, retention and log_level.")]
    Run {
        /// Number of delivery worker threads (overrides the config's `workers`).
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
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
    },

    /// Show one message with its attempts.
    #[command(after_help = "\
Examples:
  webhookd show 0190c6c8-0000-7000-8000-000000000000
  webhookd show 0190c6c8-0000-7000-8000-000000000000 --json | jq '.attempts[-1]'")]
    Show {
        /// The message's uuid.
        uuid: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },

    /// Inspect, edit and re-send dead messages (the dead-letter queue).
    #[command(
        subcommand,
        after_help = "\
Examples:
  webhookd dlq list
  webhookd dlq show 0190c6c8-0000-7000-8000-000000000000
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000 --url https://example.com/new-hook
  webhookd dlq delete --all"
    )]
    Dlq(DlqCommand),

    /// Named endpoints: their health, queue and policy; enable a disabled one.
    #[command(
        subcommand,
        after_help = "\
Examples:
  webhookd endpoints list
  webhookd endpoints show billing --json | jq .health
  webhookd endpoints enable billing"
    )]
    Endpoints(EndpointsCommand),

    /// Check a Standard Webhooks signature, as a receiver would (exit 0 valid, 1 not).
    #[command(after_help = "\
Examples:
  webhookd verify --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --id msg_p5jXN8AQM9LWM0D4loKWxJek \\
      --timestamp 1614265330 --signature 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' \\
      -d '{\"test\": 2432232314}' --tolerance 0
  webhookd verify --secret-file billing.secret --id \"$ID\" --timestamp \"$TS\" --signature \"$SIG\" -d @body.json

Exit status 0 when one of the signatures was made with one of the secrets (and the timestamp
is within the tolerance), 1 when not.")]
    Verify(VerifyArgs),

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

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// Absolute http:// or https:// URL to deliver to.
    #[arg(
        value_name = "URL",
        required_unless_present_any = ["jsonl", "endpoint"],
        conflicts_with_all = ["jsonl", "endpoint"]
    )]
    pub(crate) url: Option<String>,

    /// Deliver to the named endpoint of the config ([endpoints.NAME]) instead of a URL: its URL,
    /// headers, signing secret and delivery policy apply when the message is sent.
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

    /// Request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,

    /// Body: DATA as given, @FILE to read a file, @- to read stdin. Sent byte-for-byte.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub(crate) data: Option<String>,

    /// Idempotency key: enqueueing the same key again stores nothing and prints the first uuid.
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,

    /// First attempt not before now + DURATION (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION")]
    pub(crate) delay: Option<String>,

    /// Total attempts for this message (overrides the config's retry.max_attempts).
    #[arg(long, value_name = "N")]
    pub(crate) max_attempts: Option<u32>,

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
}

#[derive(Debug, Subcommand)]
pub(crate) enum EndpointsCommand {
    /// List endpoints (configured, or with messages in the database) with their health.
    #[command(after_help = "\
Examples:
  webhookd endpoints list
  webhookd endpoints list --json | jq -r '.[] | select(.state != \"healthy\") | .name'")]
    List {
        /// Print a JSON array of objects.
        #[arg(long)]
        json: bool,
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
    },

    /// Enable an endpoint that was disabled (or open): its held messages are delivered again.
    #[command(after_help = "\
Examples:
  webhookd endpoints enable billing")]
    Enable {
        /// The endpoint's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// A signing secret (whsec_...; repeatable: valid if any matches).
    #[arg(
        long = "secret",
        value_name = "SECRET",
        required_unless_present = "secret_file"
    )]
    pub(crate) secrets: Vec<String>,
    /// A file with one or more secrets, separated by whitespace.
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
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub(crate) data: String,
    /// Largest accepted distance between the timestamp and now (0: do not check).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub(crate) tolerance: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead messages: uuid, url, attempts, last error, dead since.
    #[command(after_help = "\
Examples:
  webhookd dlq list
  webhookd dlq list --json | jq -r '.[].uuid'")]
    List {
        /// Print a JSON array of objects.
        #[arg(long)]
        json: bool,
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
    },

    /// Move dead messages back to pending with a fresh attempt budget, optionally edited first.
    #[command(after_help = "\
Examples:
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000
  webhookd dlq retry --all
  webhookd dlq retry 0190c6c8-0000-7000-8000-000000000000 --url https://example.com/v2/hook \\
      -H 'Authorization: Bearer new-token' --remove-header X-Old -d @fixed.json")]
    Retry {
        #[command(flatten)]
        select: Selection,

        /// Send to this URL instead (not for a message of a named endpoint: change the endpoint).
        #[arg(long, value_name = "URL")]
        url: Option<String>,

        /// Add or replace a header 'Name: value' (repeatable).
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,

        /// Remove a header by name (repeatable).
        #[arg(long = "remove-header", value_name = "NAME")]
        remove_headers: Vec<String>,

        /// Replace the body: DATA, @FILE, or @- for stdin.
        #[arg(short = 'd', long = "data", value_name = "DATA")]
        data: Option<String>,
    },

    /// Delete dead messages for good.
    #[command(after_help = "\
Examples:
  webhookd dlq delete 0190c6c8-0000-7000-8000-000000000000
  webhookd dlq delete --all")]
    Delete {
        #[command(flatten)]
        select: Selection,
    },
}

/// Which dead messages a DLQ action applies to.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Selection {
    /// Uuids of dead messages.
    #[arg(value_name = "UUID")]
    pub(crate) uuids: Vec<String>,
    /// Every dead message.
    #[arg(long)]
    pub(crate) all: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_schema_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["webhookd", "status", "--db", "/x.db", "--config", "/c"]).unwrap();
        assert_eq!(cli.db.as_deref(), Some(std::path::Path::new("/x.db")));
        assert!(cli.config.is_some());
    }

    #[test]
    fn dlq_retry_needs_uuids_or_all_but_not_both() {
        assert!(Cli::try_parse_from(["webhookd", "dlq", "retry"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "dlq", "retry", "u", "--all"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "dlq", "retry", "--all"]).is_ok());
    }

    #[test]
    fn enqueue_needs_url_or_jsonl() {
        assert!(Cli::try_parse_from(["webhookd", "enqueue"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "enqueue", "--jsonl", "-"]).is_ok());
        assert!(Cli::try_parse_from(["webhookd", "enqueue", "http://x/", "--jsonl", "-"]).is_err());
    }

    /// man/webhookd.8 names every subcommand and every option of the binary (hand-written pages
    /// drift; this keeps them honest), and every subcommand's --help has examples.
    #[test]
    fn man_page_and_help_cover_the_cli() {
        let page = include_str!("../man/webhookd.8");
        let mut missing = Vec::new();
        fn walk(cmd: &clap::Command, page: &str, missing: &mut Vec<String>, path: &str) {
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    if long != "help" && !page.contains(&format!("Fl -{long}")) {
                        missing.push(format!("{path} --{long}"));
                    }
                }
                if let Some(short) = arg.get_short() {
                    if !page.contains(&format!("Fl {short}")) {
                        missing.push(format!("{path} -{short}"));
                    }
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let name = sub.get_name();
                let full = format!("{path} {name}");
                let entry = full.trim_start_matches("webhookd ");
                if !page.contains(&format!(".It Cm {entry}")) {
                    missing.push(full.clone());
                }
                if !sub
                    .get_after_help()
                    .is_some_and(|h| h.to_string().contains("Examples:"))
                {
                    missing.push(format!("{path} {name}: --help without examples"));
                }
                walk(sub, page, missing, &full);
            }
        }
        walk(&Cli::command(), page, &mut missing, "webhookd");
        assert!(missing.is_empty(), "not in man/webhookd.8: {missing:?}");
    }
}
