//! Loading the configuration: defaults, every key, and errors that name the key and the file.

use super::*;
use crate::verdict::backoff;

fn parse(text: &str) -> Result<Config> {
    let file: FileConfig = toml::from_str(text).map_err(|e| Error::InvalidConfig {
        path: "t.toml".into(),
        message: describe_toml_error(text, &e),
    })?;
    Config::from_file_config(file, Some(Path::new("t.toml")), true)
}

/// man/webhookd.toml.5 describes every key of the packaged config, which lists them all
/// (`shipped_config_shows_the_defaults` makes sure of that).
#[test]
fn man_page_covers_every_config_key() {
    let page = include_str!("../../man/webhookd.toml.5");
    let shipped = include_str!("../../etc/webhookd.toml");
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in shipped.lines().map(|l| l.trim_start_matches('#').trim()) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            let heading = match name.strip_prefix("endpoints.") {
                Some(_) => ".Ss [endpoints. Ns Ar name ]".to_owned(),
                None => format!(".Ss [{name}]"),
            };
            assert!(page.contains(&heading), "section [{name}]");
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !key.contains(' ') {
                keys.push(format!("{section}.{key}"));
                assert!(
                    page.contains(&format!(".It Cm {key} Pq")),
                    "key {section}.{key} not in man/webhookd.toml.5"
                );
            }
        }
    }
    assert_eq!(keys.len(), 55, "{keys:?}");
}

/// The packaged config (etc/webhookd.toml) parses, and its commented keys are the defaults.
#[test]
fn shipped_config_shows_the_defaults() {
    let text = include_str!("../../etc/webhookd.toml");
    let shipped = parse(text).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix('#')
                .filter(|r| r.contains(" = ") || r.starts_with('['))
                .unwrap_or(l)
        })
        // The example endpoint's secret and files exist only on a configured host (and the
        // endpoint's ca_file comes after its client_ files).
        .filter(|l| {
            !l.starts_with("secret")
                && !l.starts_with("header_files")
                && !l.starts_with("client_")
                && *l != "ca_file = \"billing-ca.pem\""
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(uncommented, text, "some keys are commented out");
    let mut all = parse(&uncommented).unwrap();
    // Keys without a default, shown with an example value: ca_file, the alert URL and the
    // example endpoint.
    assert!(all.http.ca_file.take().is_some());
    assert!(all.http.proxy.take().is_some());
    // Example ranges.
    assert!(!std::mem::take(&mut all.egress).allow.is_empty());
    assert!(all.alerts.take().is_some());
    // The example TCP listener.
    assert!(all.api.listen.take().is_some());
    assert!(all.api.tokens_file.take().is_some());
    assert!(all.api.tls.take().is_some());
    // No cap of its own by default, shown as the number of workers.
    assert_eq!(all.origins.concurrency.take(), Some(16));
    let billing = all.endpoints.remove("billing").unwrap();
    assert_eq!(billing.concurrency, Some(4));
    assert_eq!(
        billing.breaker_failures,
        crate::endpoint::DEFAULT_BREAKER_FAILURES
    );
    assert_eq!(
        billing.disable_after,
        crate::endpoint::DEFAULT_DISABLE_AFTER
    );
    assert_eq!(billing.tenant.as_deref(), Some("acme"));
    assert_eq!(billing.events, ["invoice.*"]);
    assert_eq!(billing.route.via, crate::egress::Via::Direct);
    assert!(!billing.route.allow_private);
    // The package puts the socket where the unit's RuntimeDirectory is, and the secrets key
    // where its postinst makes it.
    let defaults = parse(
        "db = \"/var/lib/webhookd/webhookd.db\"\n[api]\nsocket = \"/run/webhookd/api.sock\"\n\
         [secrets]\nkey_file = \"/etc/webhookd/secrets.key\"",
    )
    .unwrap();
    assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
    assert_eq!(format!("{all:?}"), format!("{defaults:?}"));
}

#[test]
fn documented_example_parses() {
    let c = parse(
        r#"
db = "/var/lib/webhookd/webhookd.db"
workers = 16
[retry]
max_attempts = 15
base_delay = "5s"
max_delay = "6h"
[http]
timeout = "30s"
connect_timeout = "5s"
"#,
    )
    .unwrap();
    assert_eq!(c.workers, 16);
    assert_eq!(c.retry.max_attempts, 15);
    assert_eq!(c.retry.max_delay, Duration::from_secs(21600));
    assert_eq!(c.http.connect_timeout, Duration::from_secs(5));
}

/// Every TOML example of the README loads (files it names need not exist).
#[test]
fn readme_config_examples_load() {
    let readme = include_str!("../../README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 2, "{}", blocks.len());
    for b in blocks {
        let file: FileConfig = toml::from_str(&b)
            .map_err(|e| describe_toml_error(&b, &e))
            .unwrap_or_else(|e| panic!("{e}\n{b}"));
        Config::from_file_config(file, Some(Path::new("README.md")), false)
            .unwrap_or_else(|e| panic!("{e}\n{b}"));
    }
}

#[test]
fn unknown_keys_are_refused_with_line_and_key() {
    let e = parse("workers = 4\n[retry]\nmax_atempts = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml")
            && e.contains("line 3")
            && e.contains("in [retry]")
            && e.contains("max_atempts"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_key_and_file() {
    let e = parse("workers = \"many\"\n").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("workers"), "{e}");
}

#[test]
fn bad_duration_names_key() {
    let e = parse("[http]\ntimeout = \"5 parsecs\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("http.timeout") && e.contains("5 parsecs"), "{e}");
}

#[test]
fn origin_settings_are_checked() {
    let c = parse("[origins]\nconcurrency = 3\nbreaker_failures = 9\nbreaker_cooldown = \"1m\"")
        .unwrap();
    assert_eq!(
        (c.origins.concurrency, c.origins.breaker_failures),
        (Some(3), 9)
    );
    assert_eq!(c.origins.breaker_cooldown, Duration::from_secs(60));
    for (text, key) in [
        ("concurrency = 0", "origins.concurrency"),
        ("breaker_failures = 0", "origins.breaker_failures"),
        ("breaker_cooldown = \"0s\"", "origins.breaker_cooldown"),
        ("breaker_cooldown = \"soon\"", "origins.breaker_cooldown"),
        ("colour = 1", "colour"),
    ] {
        let e = parse(&format!("[origins]\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}

#[test]
fn out_of_range_values_are_refused() {
    assert!(parse("workers = 0").is_err());
    assert!(parse("[retry]\nmax_attempts = 0").is_err());
    assert!(parse("[retry]\nbase_delay = \"2h\"\nmax_delay = \"1h\"").is_err());
    assert!(parse("[http]\ntimeout = \"0s\"").is_err());
    assert!(parse("max_body_size = \"3 bananas\"").is_err());
}

#[test]
fn byte_sizes() {
    assert_eq!(parse("max_body_size = 10").unwrap().max_body_size, 10);
    assert_eq!(
        parse("max_body_size = \"2MiB\"").unwrap().max_body_size,
        2 << 20
    );
}

#[test]
fn defaults_survive_a_receiver_down_for_24_hours() {
    let c = Config::from_file_config(FileConfig::default(), None, true).unwrap();
    // Smallest possible span between first and last attempt, jitter at its minimum.
    let span: Duration = (1..c.retry.max_attempts)
        .map(|n| backoff::next_delay(&c.retry, n, None, 0.0))
        .sum();
    assert!(span >= Duration::from_secs(24 * 3600), "{span:?}");
}

/// Every bad `[api]` value is refused naming its key; a TCP listener needs tokens, and TLS (or
/// the opt-out) off loopback.
#[test]
fn api_settings_are_checked() {
    let db = "db = \"/tmp/x.db\"\n[api]\n";
    for (text, needle) in [
        ("max_connections = 0", "api.max_connections"),
        ("max_request_size = \"1GiB\"", "api.max_request_size"),
        ("request_timeout = \"0s\"", "api.request_timeout"),
        ("socket = \"\"", "api.socket"),
        ("listen = \"nope\"", "api.listen"),
        ("listen = \"127.0.0.1:8080\"", "api.tokens_file"),
        (
            "listen = \"0.0.0.0:8080\"\ntokens_file = \"/t\"",
            "tls_cert",
        ),
        ("tls_cert = \"/c\"", "api.tls_key"),
        ("tls_cert = \"/c\"\ntls_key = \"/k\"", "without api.listen"),
    ] {
        let e = parse(&format!("{db}{text}\n")).unwrap_err().to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
    let ok = parse(&format!(
        "{db}listen = \"0.0.0.0:8080\"\ntokens_file = \"/t\"\nallow_plaintext = true\n"
    ))
    .unwrap();
    assert_eq!(ok.api.listen.map(|a| a.port()), Some(8080));
}
