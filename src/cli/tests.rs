use super::*;
use clap::CommandFactory;

#[test]
fn cli_schema_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_options_work_before_and_after_the_subcommand() {
    let cli =
        Cli::try_parse_from(["webhookd", "status", "--db", "/x.db", "--config", "/c"]).unwrap();
    assert_eq!(
        cli.common().db.as_deref(),
        Some(std::path::Path::new("/x.db"))
    );
    assert!(cli.common().config.is_some());
    let cli =
        Cli::try_parse_from(["webhookd", "-v", "--db", "/y.db", "dlq", "list", "-v"]).unwrap();
    assert_eq!(cli.common().verbose, 2);
    assert_eq!(
        cli.common().db.as_deref(),
        Some(std::path::Path::new("/y.db"))
    );
    // Between `dlq` (or `endpoints`) and its subcommand too; the one given last wins.
    for (args, db, verbose) in [
        (
            &["webhookd", "dlq", "--db", "/a.db", "list"][..],
            "/a.db",
            0,
        ),
        (
            &[
                "webhookd", "--db", "/a.db", "dlq", "-v", "--db", "/b.db", "list", "-v",
            ][..],
            "/b.db",
            2,
        ),
        (
            &["webhookd", "dlq", "--db", "/a.db", "list", "--db", "/c.db"][..],
            "/c.db",
            0,
        ),
        (
            &[
                "webhookd",
                "endpoints",
                "-q",
                "--db",
                "/d.db",
                "show",
                "billing",
            ][..],
            "/d.db",
            0,
        ),
    ] {
        let cli = Cli::try_parse_from(args).unwrap();
        let common = cli.common();
        assert_eq!(
            common.db.as_deref(),
            Some(std::path::Path::new(db)),
            "{args:?}"
        );
        assert_eq!(common.verbose, verbose, "{args:?}");
    }
}

#[test]
fn verify_and_completions_take_no_config_or_db() {
    for args in [
        &["webhookd", "completions", "bash", "--db", "/x"][..],
        &[
            "webhookd",
            "verify",
            "--secret",
            "s",
            "--id",
            "i",
            "--timestamp",
            "1",
            "--signature",
            "s",
            "-d",
            "x",
            "--config",
            "/c",
        ],
    ] {
        assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
    }
    let cli = Cli::try_parse_from(["webhookd", "--db", "/x", "completions", "bash"]).unwrap();
    assert!(cli.misplaced_options().is_some());
    let cli = Cli::try_parse_from(["webhookd", "completions", "bash"]).unwrap();
    assert!(cli.misplaced_options().is_none());
}

#[test]
fn verify_takes_a_secret_file_instead_of_a_secret() {
    let base = [
        "webhookd",
        "verify",
        "--id",
        "i",
        "--timestamp",
        "1",
        "--signature",
        "s",
        "-d",
        "x",
    ];
    assert!(Cli::try_parse_from(base).is_err(), "a secret is required");
    let mut with_file = base.to_vec();
    with_file.extend(["--secret-file", "/f"]);
    assert!(Cli::try_parse_from(&with_file).is_ok());
    let mut both = with_file.clone();
    both.extend(["--secret", "whsec_x"]);
    assert!(Cli::try_parse_from(&both).is_ok());
}

#[test]
fn dlq_actions_take_uuids_all_or_filters_but_not_two_of_them() {
    assert!(Cli::try_parse_from(["webhookd", "dlq", "retry", "u", "--all"]).is_err());
    assert!(Cli::try_parse_from(["webhookd", "dlq", "retry", "u", "--endpoint", "b"]).is_err());
    assert!(Cli::try_parse_from(["webhookd", "dlq", "delete", "--all", "--since", "2h"]).is_err());
    assert!(Cli::try_parse_from(["webhookd", "dlq", "retry", "--all"]).is_ok());
    assert!(Cli::try_parse_from(["webhookd", "dlq", "retry", "--status", "5xx"]).is_ok());
    assert!(Cli::try_parse_from(["webhookd", "cancel", "u", "--state", "pending"]).is_err());
}

#[test]
fn enqueue_needs_url_or_jsonl() {
    assert!(Cli::try_parse_from(["webhookd", "enqueue"]).is_err());
    assert!(Cli::try_parse_from(["webhookd", "enqueue", "--jsonl", "-"]).is_ok());
    assert!(Cli::try_parse_from(["webhookd", "enqueue", "http://x/", "--jsonl", "-"]).is_err());
}

#[test]
fn negative_values_reach_the_validation_not_the_parser() {
    let cli = Cli::try_parse_from(["webhookd", "enqueue", "http://x/", "--delay", "-5s"]).unwrap();
    let Command::Enqueue(args) = cli.command else {
        panic!()
    };
    assert_eq!(args.delay.as_deref(), Some("-5s"));
}

/// man/webhookd.8 names every subcommand and every option of the binary (hand-written pages
/// drift; this keeps them honest), and every subcommand's --help has examples.
#[test]
fn man_page_and_help_cover_the_cli() {
    let page = include_str!("../../man/webhookd.8");
    let mut missing = Vec::new();
    fn walk(cmd: &clap::Command, page: &str, missing: &mut Vec<String>, path: &str) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                if long != "help" && long != "version" && !page.contains(&format!("Fl -{long}")) {
                    missing.push(format!("{path} --{long}"));
                }
            }
            if let Some(short) = arg.get_short() {
                if short != 'h' && short != 'V' && !page.contains(&format!("Fl {short}")) {
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

/// The command lines of `text`: lines that run `webhookd` (after `$`, an environment
/// assignment or a pipe), with backslash continuations joined.
fn command_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if !pending.is_empty() {
            pending.push(' ');
            pending.push_str(line.trim_end_matches('\\'));
            if !line.ends_with('\\') {
                out.push(std::mem::take(&mut pending));
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let runs = words.first() == Some(&"webhookd")
            || words.windows(2).any(|w| w[0] == "|" && w[1] == "webhookd")
            || words.first().is_some_and(|w| w.contains('=')) && words.get(1) == Some(&"webhookd");
        if !runs {
            continue;
        }
        if line.ends_with('\\') {
            pending = line.trim_end_matches('\\').to_owned();
        } else {
            out.push(line.to_owned());
        }
    }
    out
}

/// The words of the `webhookd` invocation in a shell line, up to a pipe or redirection.
fn invocation(line: &str) -> Option<Vec<String>> {
    let line = line.split(" # ").next().unwrap_or(line);
    let words = shlex::split(line)?;
    let start = words.iter().position(|w| w == "webhookd")?;
    let end = words[start..]
        .iter()
        .position(|w| ["|", ">", ">>", "<", "&&", ";", "2>&1"].contains(&w.as_str()))
        .map_or(words.len(), |e| start + e);
    // Shell variables stand for values the reader has: a number where a number is wanted.
    let words = words[start..end].iter().map(|w| match w.strip_prefix('$') {
        Some(var) if var.contains("TS") || var.contains("TIME") => "1614265330".to_owned(),
        Some(_) => "x".to_owned(),
        None => w.clone(),
    });
    Some(words.collect())
}

#[track_caller]
fn assert_parses(source: &str, lines: &[String]) {
    assert!(!lines.is_empty(), "{source}: no command lines found");
    for line in lines {
        let Some(words) = invocation(line) else {
            continue;
        };
        if let Err(e) = Cli::try_parse_from(&words) {
            if e.kind() != clap::error::ErrorKind::DisplayHelp
                && e.kind() != clap::error::ErrorKind::DisplayVersion
            {
                panic!("{source}: example does not parse: {line}\n{e}");
            }
        }
    }
}

/// Every example in every --help, the README and both man pages is a command line the real
/// CLI definition accepts (examples cannot drift from the options any more).
#[test]
fn every_documented_example_parses() {
    fn helps(cmd: &clap::Command, out: &mut Vec<String>) {
        if let Some(h) = cmd.get_after_help() {
            out.extend(command_lines(&h.to_string()));
        }
        for sub in cmd.get_subcommands() {
            helps(sub, out);
        }
    }
    let mut help_lines = Vec::new();
    helps(&Cli::command(), &mut help_lines);
    assert_parses("--help", &help_lines);

    let readme = include_str!("../../README.md");
    let mut blocks = String::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if in_sh {
            blocks.push_str(line);
            blocks.push('\n');
        }
    }
    assert_parses("README.md", &command_lines(&blocks));

    for (name, page) in [
        ("webhookd.8", include_str!("../../man/webhookd.8")),
        ("webhookd.toml.5", include_str!("../../man/webhookd.toml.5")),
    ] {
        let mut literal = String::new();
        let mut inside = false;
        for line in page.lines() {
            if line.starts_with(".Bd -literal") {
                inside = true;
            } else if line.starts_with(".Ed") {
                inside = false;
            } else if inside {
                literal.push_str(&line.replace("\\e", "\\").replace("\\-", "-"));
                literal.push('\n');
            } else if let Some(dl) = line.strip_prefix(".Dl ") {
                literal.push_str(&dl.replace("\\e", "\\").replace("\\-", "-"));
                literal.push('\n');
            }
        }
        let lines = command_lines(&literal);
        // webhookd.toml(5)'s examples are config, not commands; any command it shows must parse.
        if name == "webhookd.8" || !lines.is_empty() {
            assert_parses(name, &lines);
        }
    }
}

/// No example line in --help is longer than a terminal that shows it unwrapped needs.
#[test]
fn help_examples_are_not_wrapped() {
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("Global options:"), "{help}");
    let mut cmd = Cli::command();
    let enqueue = cmd
        .find_subcommand_mut("enqueue")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(
        enqueue.contains("-H 'Content-Type: application/json' -d '{\"event\":\"paid\"}'"),
        "{enqueue}"
    );
}
