//! webhookd: reliable outbound webhook delivery from one binary with an embedded SQLite queue.
//!
//! `main` only parses the command line, builds the validated `Config`, sets up logging, runs the
//! command and maps its error to an exit code (see README.md, "Exit codes").

mod alert;
mod cli;
mod cmd;
mod config;
mod daemon;
mod deliver;
mod endpoint;
mod error;
mod faults;
mod filter;
mod logging;
mod message;
mod sign;
mod store;
mod text;
mod view;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with 0; usage errors to stderr with 64, like every other
        // mistake on the command line (README.md, "Exit codes").
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                error::exit::USAGE
            } else {
                0
            });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("webhookd: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn run(cli: cli::Cli) -> error::Result<u8> {
    // These need no config: they work even with a broken config file.
    if let Some(message) = cli.misplaced_options() {
        return Err(error::Error::Usage {
            message: message.into(),
        });
    }
    match &cli.command {
        cli::Command::Completions { shell } => return cmd::completions(*shell),
        cli::Command::Verify(args) => return cmd::verify(args),
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
