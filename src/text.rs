//! Text shown to people: receiver responses, bodies and keys are untrusted, so every control
//! character is escaped before it reaches a terminal or a log line (an escape sequence in a
//! response must not recolour, move or retitle an operator's terminal). Also durations and the
//! destination host, as operators read them. Pure functions.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

/// `s` with every control character (C0, DEL, C1) escaped: `\n`, `\t`, `\r`, `\e`, `\xNN`,
/// `\u{NN}`. Backslashes stay as they are, so ordinary text reads as it was sent (the escapes
/// are for reading, not for parsing back). Borrowed when there is nothing to escape.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`escape`], but keeps line breaks (and tabs) for text shown on several lines.
pub(crate) fn escape_multiline(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && c != '\t' && needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\n' || c == '\t' {
            out.push(c);
        } else {
            push_char(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// Bytes as text: valid UTF-8 escaped as by [`escape`], other bytes as `\xNN`.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Control characters, and the invisible ones that reorder or hide text: bidirectional
/// overrides and isolates (an `\u{202e}` makes `/exe.jpg` of `/gpj.exe`), zero-width characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{1b}' => out.push_str("\\e"),
        c if (c as u32) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// A duration as an operator writes it in the config: `250ms`, `30s`, `10m`, `6h`, `5d`, or
/// combined (`1h 30m`), with no unit smaller than needed.
pub(crate) fn duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let rest = ms % 1000;
    if rest > 0 && parts.len() < 2 {
        parts.push(format!("{rest}ms"));
    }
    parts.join(" ")
}

/// Milliseconds as a duration text ([`duration`]); negative as zero.
pub(crate) fn duration_ms(ms: i64) -> String {
    duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// `n` and a noun, singular or plural: "1 message", "2 messages".
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The host (and port, when given) of a URL, for log lines: never the user info, path or
/// query, which may carry credentials.
pub(crate) fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    escape(host).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain text"), "plain text");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("\u{1b}[31mRED\u{1b}[0m"), "\\e[31mRED\\e[0m");
        assert_eq!(escape("a\nb\tc\rd\u{7}"), "a\\nb\\tc\\rd\\x07");
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(escape("\u{7f}"), "\\x7f");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
        assert_eq!(escape("/\u{202e}gpj.exe"), "/\\u{202e}gpj.exe");
        assert_eq!(escape("a\u{200b}b"), "a\\u{200b}b");
        assert_eq!(escape_multiline("a\nb\u{1b}c"), "a\nb\\ec");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_hex() {
        assert_eq!(
            escape_bytes(b"\x00\x01\x02ok\xff"),
            "\\x00\\x01\\x02ok\\xff"
        );
    }

    #[test]
    fn durations_read_as_written_in_the_config() {
        for (d, want) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(5 * 86_400), "5d"),
            (Duration::from_secs(5_400), "1h 30m"),
            (Duration::from_millis(1_500), "1s 500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(duration(d), want);
        }
    }

    #[test]
    fn hosts_without_credentials_or_paths() {
        assert_eq!(
            host_of("https://user:pw@example.com:8443/p?token=x"),
            "example.com:8443"
        );
        assert_eq!(host_of("http://[::1]:9/x"), "[::1]:9");
        assert_eq!(host_of("http://example.com"), "example.com");
    }
}
