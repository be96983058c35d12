//! Short-lived subcommands. The only modules that print to stdout.
//!
//! Each returns the process exit code on success; errors go back to `main`.

mod dlq;
mod endpoints;
mod enqueue;
mod show;
mod status;
mod verify;

pub(crate) use verify::run as verify;

use std::io::{Read, Write};

use crate::cli::{Cli, Command, DlqCommand, EndpointsCommand};
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
                let level = crate::logging::level(config.log_level, cli.verbose, cli.quiet);
                Ok((config, level))
            };
            crate::daemon::run(config, &reload).map(|()| exit::OK)
        }
        Command::Status { json } => status::run(config, *json),
        Command::Show { uuid, json } => show::run(config, uuid, *json, false),
        Command::Dlq(DlqCommand::List { json }) => dlq::list(config, *json),
        Command::Dlq(DlqCommand::Show { uuid, json }) => show::run(config, uuid, *json, true),
        Command::Dlq(DlqCommand::Retry {
            select,
            url,
            headers,
            remove_headers,
            data,
        }) => dlq::retry(
            config,
            select,
            url.clone(),
            headers,
            remove_headers,
            data.as_deref(),
        ),
        Command::Dlq(DlqCommand::Delete { select }) => dlq::delete(config, select),
        Command::Endpoints(EndpointsCommand::List { json }) => endpoints::list(config, *json),
        Command::Endpoints(EndpointsCommand::Show { name, json }) => {
            endpoints::show(config, name, *json)
        }
        Command::Endpoints(EndpointsCommand::Enable { name }) => endpoints::enable(config, name),
        Command::Verify(args) => verify(args),
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

/// Reads a body argument: `DATA` as given, `@FILE` from a file, `@-` from stdin; refuses more than
/// `max` bytes without reading further.
///
/// # Errors
/// `ReadInput` when the file or stdin cannot be read, `InvalidInput` when the body is too large.
pub(crate) fn read_body(arg: &str, max: usize) -> Result<Vec<u8>> {
    let too_big = || Error::input(format!("body is larger than max_body_size ({max} bytes)"));
    let Some(source) = arg.strip_prefix('@') else {
        if arg.len() > max {
            return Err(too_big());
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
    read.map_err(|e| Error::ReadInput {
        what: if source == "-" {
            "stdin".into()
        } else {
            source.to_owned()
        },
        source: e,
    })?;
    if body.len() > max {
        return Err(too_big());
    }
    Ok(body)
}

/// The URL a stored message goes to: its own, or its endpoint's URL with its path appended (an
/// endpoint no longer configured shows as `[NAME]PATH`).
pub(crate) fn target_url(config: &Config, endpoint: Option<&str>, url: &str) -> String {
    match endpoint {
        None => url.to_owned(),
        Some(name) => config
            .endpoints
            .get(name)
            .map_or_else(|| format!("[{name}]{url}"), |e| e.url_for(url)),
    }
}

/// An RFC 3339 UTC time with milliseconds, from stored Unix milliseconds.
pub(crate) fn time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn opt_time(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |m| time(m).into())
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
