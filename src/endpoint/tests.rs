//! Endpoint sections: URLs, secrets, files, limits, routes.
use super::*;

fn section(toml_text: &str) -> EndpointSection {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn urls_with_paths() {
    let e = from_section(
        "b",
        section(r#"url = "https://x.example/hooks/""#),
        Path::new("."),
        true,
    )
    .unwrap();
    assert_eq!(e.url_for(""), "https://x.example/hooks/");
    assert_eq!(e.url_for("/v2?a=1"), "https://x.example/hooks/v2?a=1");
    assert_eq!(e.concurrency_with(16), 8);
    assert_eq!(e.concurrency_with(1), 1);
}

#[test]
fn secrets_from_files_and_credentials_never_in_debug() {
    let dir = std::env::temp_dir().join(format!("webhookd-endpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    std::fs::write(dir.join("auth"), "Bearer s3cr3t\n").unwrap();
    let e = from_section(
        "b",
        section(
            r#"url = "http://h/"
secret_file = "k"
header_files = { Authorization = "auth" }"#,
        ),
        &dir,
        true,
    )
    .unwrap();
    assert_eq!(e.keys.len(), 1);
    assert_eq!(
        e.headers,
        vec![("Authorization".to_owned(), "Bearer s3cr3t".to_owned())]
    );
    let shown = format!("{e:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("MfKQ"),
        "{shown}"
    );
    let missing = from_section(
        "b",
        section("url = \"http://h/\"\nsecret_file = \"nope\""),
        &dir,
        true,
    )
    .unwrap_err();
    assert_eq!(missing.field, "endpoints.b.secret_file");
    assert!(missing.reason.contains("nope"), "{}", missing.reason);
    // Commands other than the daemon do without files they cannot read.
    let lenient = from_section(
        "b",
        section("url = \"http://h/\"\nsecret_file = \"nope\""),
        &dir,
        false,
    )
    .unwrap();
    assert!(lenient.keys.is_empty());
    assert_eq!(lenient.unreadable.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_values_name_their_key() {
    for (text, k) in [
        ("url = \"ftp://h/\"", "url"),
        ("url = \"http://h/?q\"", "url"),
        ("url = \"http://h/\"\nconcurrency = 0", "concurrency"),
        ("url = \"http://h/\"\nrate = \"fast\"", "rate"),
        ("url = \"http://h/\"\non_dead = \"drop\"", "on_dead"),
        ("url = \"http://h/\"\nsecret = \"whsec_c2hvcnQ=\"", "secret"),
        (
            "url = \"http://h/\"\nheaders = { \"Content-Length\" = \"1\" }",
            "headers",
        ),
        ("url = \"http://h/\"\ntimeout = \"0s\"", "timeout"),
    ] {
        let e = from_section("b", section(text), Path::new("."), true).unwrap_err();
        assert_eq!(e.field, format!("endpoints.b.{k}"), "{text}: {}", e.reason);
    }
    assert!(from_section(
        "bad name",
        section("url = \"http://h/\""),
        Path::new("."),
        true
    )
    .is_err());
}
