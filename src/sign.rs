//! Standard Webhooks v1 signatures (<https://www.standardwebhooks.com/>): HMAC-SHA256 over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64-decoded part of a `whsec_`
//! secret, sent as `webhook-signature: v1,<base64>`; several keys sign at once (space-separated)
//! while a receiver switches from an old key to a new one. Pure functions, no I/O.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Key lengths the specification allows (24 to 64 bytes once decoded).
const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;
const PREFIX: &str = "whsec_";

/// A signing key, decoded. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// Decodes `whsec_<base64>` (the prefix may be left out).
    ///
    /// # Errors
    /// A message saying what is wrong, without the secret itself.
    pub(crate) fn parse(secret: &str) -> Result<Key, String> {
        let b64 = secret.trim();
        let b64 = b64.strip_prefix(PREFIX).unwrap_or(b64);
        let key = STANDARD
            .decode(b64)
            .map_err(|e| format!("secret is not whsec_ followed by base64: {e}"))?;
        if !KEY_LEN.contains(&key.len()) {
            return Err(format!(
                "secret decodes to {} bytes; Standard Webhooks keys are 24 to 64 bytes",
                key.len()
            ));
        }
        Ok(Key(key))
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` value: one `v1,<base64>` per key, space-separated, in key order.
pub(crate) fn signature(keys: &[Key], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "v1,{}",
                STANDARD.encode(k.mac(id, timestamp, body).finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which of `keys` (0-based) made one of the `v1` signatures in `header`, compared in constant time.
/// Signatures of other versions are ignored.
pub(crate) fn verify(
    keys: &[Key],
    id: &str,
    timestamp: u64,
    body: &[u8],
    header: &str,
) -> Option<usize> {
    let sigs: Vec<Vec<u8>> = header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    keys.iter().position(|k| {
        sigs.iter()
            .any(|sig| k.mac(id, timestamp, body).verify_slice(sig).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_specification_test_vector() {
        let key = Key::parse(SECRET).unwrap();
        assert_eq!(
            signature(std::slice::from_ref(&key), ID, TIMESTAMP, BODY),
            EXPECTED
        );
        assert_eq!(verify(&[key], ID, TIMESTAMP, BODY, EXPECTED), Some(0));
    }

    #[test]
    fn rotation_signs_with_every_key_and_verifies_with_any() {
        let old = Key::parse(SECRET).unwrap();
        let new = Key::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let header = signature(&[new.clone(), old.clone()], ID, TIMESTAMP, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], EXPECTED);
        assert_eq!(
            verify(std::slice::from_ref(&old), ID, TIMESTAMP, BODY, &header),
            Some(0)
        );
        assert_eq!(
            verify(std::slice::from_ref(&new), ID, TIMESTAMP, BODY, &header),
            Some(0)
        );
        // A changed body, id or timestamp fails.
        assert_eq!(
            verify(std::slice::from_ref(&old), ID, TIMESTAMP, b"{}", &header),
            None
        );
        assert_eq!(
            verify(std::slice::from_ref(&old), "x", TIMESTAMP, BODY, &header),
            None
        );
        assert_eq!(verify(&[old], ID, TIMESTAMP + 1, BODY, &header), None);
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        for bad in ["whsec_not base64!", "whsec_c2hvcnQ=", ""] {
            let e = Key::parse(bad).unwrap_err();
            assert!(!bad.is_empty() && !e.contains(bad) || bad.is_empty(), "{e}");
        }
        assert_eq!(
            format!("{:?}", Key::parse(SECRET).unwrap()),
            "Key(<redacted>)"
        );
        // The prefix may be left out.
        assert!(Key::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    }
}
