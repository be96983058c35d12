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
mod logging;
mod message;
mod sign;
mod store;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
    logging::init(logging::level(level, cli.verbose, cli.quiet))?;
    cmd::dispatch(&cli, &config)
}
