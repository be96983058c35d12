//! webhookd: reliable outbound webhook delivery from one binary with an embedded SQLite queue.
//!
//! The library holds everything; `src/main.rs` only parses the command line and maps the result
//! to an exit code, so that the CLI, the daemon and the benchmark share one core. Modules, leaves
//! first (no import cycles: `tests/architecture.rs` checks it, and who may use SQL, HTTP, signals
//! and stdout):
//!
//! - leaves: `check` (validation), `time`, `text` (escaping for people), `sign`, `model` (the
//!   domain's types), `filter`, `message`, `faults`;
//! - `config` (+ `endpoint`), `verdict` (what an attempt means), `view` (JSON views);
//! - `store` (the only SQL), `deliver` (workers, the only HTTP client, endpoint policy), `alert`;
//! - `daemon` (the only signals and sd-notify), `cmd` (the only stdout), `cli`, `logging`, `error`.

#![forbid(unsafe_code)]

mod alert;
mod api;
mod check;
mod cli;
mod cmd;
mod config;
mod counters;
mod daemon;
mod deliver;
mod egress;
mod endpoint;
mod error;
mod faults;
mod filter;
mod history;
mod ingest;
mod logging;
mod message;
mod model;
mod ops;
mod random;
mod sign;
mod store;
mod text;
mod threads;
mod time;
mod verdict;
mod view;

pub use cli::Cli;
pub use error::Error;

/// Runs the command `cli` names; the exit code on success.
///
/// # Errors
/// What the command fails with; `Error::exit_code` maps it to the documented exit code.
pub fn run(cli: Cli) -> Result<u8, Error> {
    if let Some(message) = cli.misplaced_options() {
        return Err(Error::Usage {
            message: message.into(),
        });
    }
    match &cli.command {
        cli::Command::Completions { shell } => return cmd::completions(*shell),
        cli::Command::Verify(args) => return cmd::verify(args),
        cli::Command::Token(args) => return cmd::token(args),
        _ => {}
    }
    let config = config::Config::load(&cli)?;
    let level = match cli.command {
        cli::Command::Run { .. } => config.log_level,
        _ => log::LevelFilter::Warn,
    };
    let common = cli.common();
    logging::init(logging::level(level, common.verbose, common.quiet))?;
    cmd::dispatch(&cli, &config)
}

/// An error as one line for a terminal: what it quotes of the user's or a receiver's text is
/// escaped (`text::escape`).
pub fn describe(err: &Error) -> String {
    text::escape(&err.to_string()).into_owned()
}

/// The exit code of a command-line usage error (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = error::exit::USAGE;
