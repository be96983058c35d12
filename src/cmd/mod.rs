//! Short-lived subcommands. The only modules that print to stdout.
//!
//! Each returns the process exit code on success; errors go back to `main`. Text for people is
//! escaped (`text::escape`): receiver responses, bodies and keys never reach a terminal raw.

mod bulk;
mod copy;
mod defined;
mod dlq;
mod endpoints;
mod enqueue;
mod event;
mod list;
mod show;
mod spool;
mod status;
mod token;
mod verify;

pub(crate) use token::run as token;
pub(crate) use verify::run as verify;

use std::io::{Read, Write};

use crate::cli::{Cli, Command, DlqArgs, DlqCommand, EndpointsArgs};
use crate::config::Config;
use crate::error::{exit, Error, Result};

/// Runs one subcommand.
///
/// # Errors
/// Whatever the subcommand fails with.
pub(crate) fn dispatch(cli: &Cli, config: &Config) -> Result<u8> {
    match &cli.command {
        Command::Enqueue(args) => enqueue::run(args, config),
        Command::Run { .. } => {
            // SIGHUP: the same sources again (file, then flags), so flags keep their precedence.
            let reload = || {
                let config = Config::load(cli)?;
                let common = cli.common();
                let level = crate::logging::level(config.log_level, common.verbose, common.quiet);
                Ok((config, level))
            };
            crate::daemon::run(config, &reload).map(|()| exit::OK)
        }
        Command::Status { json, .. } => status::run(config, *json),
        Command::Migrate { json, .. } => status::migrate(config, *json),
        Command::Copy { from, to, json, .. } => copy::run(config, from, to.as_deref(), *json),
        Command::Show {
            uuid,
            json,
            body,
            raw,
            ..
        } => show::run(
            config,
            uuid,
            show::Mode {
                json: *json,
                body: *body,
                raw: *raw,
                dead_only: false,
            },
        ),
        Command::List(args) => list::run(config, args),
        Command::Cancel(args) => bulk::cancel(config, args),
        Command::Replay(args) => bulk::replay(config, args),
        Command::Dlq(DlqArgs {
            command: DlqCommand::List { filter, json, .. },
            ..
        }) => dlq::list(config, filter, *json),
        Command::Dlq(DlqArgs {
            command: DlqCommand::Show { uuid, json, .. },
            ..
        }) => show::run(
            config,
            uuid,
            show::Mode {
                json: *json,
                body: false,
                raw: false,
                dead_only: true,
            },
        ),
        Command::Dlq(DlqArgs {
            command: DlqCommand::Retry(args),
            ..
        }) => bulk::dlq_retry(config, args),
        Command::Dlq(DlqArgs {
            command: DlqCommand::Delete(args),
            ..
        }) => bulk::dlq_delete(config, args),
        Command::Endpoints(EndpointsArgs { command, .. }) => endpoints::run(config, command),
        Command::Origins(crate::cli::OriginsArgs {
            command: crate::cli::OriginsCommand::List { all, json, .. },
            ..
        }) => endpoints::origins(config, *all, *json),
        Command::Verify(args) => verify(args),
        Command::Token(args) => token(args),
        Command::Completions { shell } => completions(*shell),
    }
}

/// `webhookd completions SHELL`: needs no config, so `main` may call it before loading one.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Into a buffer: clap_complete panics on a write error (e.g. a closed pipe); `out` does not.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "webhookd", &mut script);
    out(String::from_utf8_lossy(script.trim_ascii_end()))?;
    Ok(exit::OK)
}

pub(crate) use crate::ops::filter;

/// Reads a body argument: `DATA` as given, `@FILE` from a file, `@-` from stdin; refuses more than
/// `max` bytes without reading further (a `DATA` argument is a usage error, a file's content bad
/// input data).
///
/// # Errors
/// `ReadInput` when the file or stdin cannot be read, `Usage`/`InvalidInput` when the body is too
/// large.
pub(crate) fn read_body(arg: &str, max: usize) -> Result<Vec<u8>> {
    let too_big = || format!("body is larger than max_body_size ({max} bytes)");
    let Some(source) = arg.strip_prefix('@') else {
        if arg.len() > max {
            return Err(Error::Usage {
                message: format!("-d: {}", too_big()),
            });
        }
        return Ok(arg.as_bytes().to_vec());
    };
    let mut body = Vec::new();
    let limit = max as u64 + 1;
    let read = if source == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut body)
    } else {
        std::fs::File::open(source).and_then(|f| f.take(limit).read_to_end(&mut body))
    };
    let what = if source == "-" { "stdin" } else { source };
    read.map_err(|e| Error::ReadInput {
        what: what.to_owned(),
        source: e,
    })?;
    if body.len() > max {
        return Err(Error::input(format!("{what}: {}", too_big())));
    }
    Ok(body)
}

pub(crate) use crate::time::rfc3339 as time;
pub(crate) use crate::view::target_url;

/// Whether stdout is a terminal (a person reads it).
pub(crate) fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

/// Writes to stdout, mapping a closed pipe to a clean exit and other errors to `Write`.
pub(crate) fn out(text: impl std::fmt::Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(source) => Err(Error::Write {
            what: "stdout".into(),
            source,
        }),
    }
}

/// Writes bytes to stdout as they are (for `show --body`).
pub(crate) fn out_bytes(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(source) => Err(Error::Write {
            what: "stdout".into(),
            source,
        }),
    }
}
