//! webhookd's command line: parse, run, exit with the code README.md documents ("Exit codes").

use std::process::ExitCode;

use clap::Parser;

/// musl's malloc maps and unmaps memory several times per delivery and serializes threads on one
/// lock; jemalloc (bounded by the settings in .cargo/config.toml) takes its place in the static
/// build, for SQLite's allocations too.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match webhookd::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with 0; usage errors to stderr with 64, like every other
        // mistake on the command line.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                webhookd::EXIT_USAGE
            } else {
                0
            });
        }
    };
    match webhookd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("webhookd: {}", webhookd::describe(&err));
            ExitCode::from(err.exit_code())
        }
    }
}
