//! `webhookd verify`: checks a Standard Webhooks signature the way a receiver does, so that a
//! receiver's developers can test their side against what webhookd sends. Needs no config.

use super::{out, read_body};
use crate::check;
use crate::cli::VerifyArgs;
use crate::error::{exit, Error, Result};
use crate::sign::{self, Key};

/// Bodies up to this size are read.
const MAX_BODY: usize = 64 << 20;

/// Runs `verify`.
///
/// # Errors
/// `Unverified` (exit 1) when no signature matches or the timestamp is out of tolerance;
/// `InvalidInput` for a malformed secret or tolerance; `ReadInput` for unreadable files.
pub(crate) fn run(args: &VerifyArgs) -> Result<u8> {
    let mut secrets = args.secrets.clone();
    if let Some(path) = &args.secret_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadInput {
            what: path.display().to_string(),
            source,
        })?;
        secrets.extend(text.split_whitespace().map(str::to_owned));
    }
    let keys = secrets
        .iter()
        .map(|s| Key::parse(s).map_err(|m| Error::input(format!("--secret: {m}"))))
        .collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Err(Error::input("no secret given"));
    }
    let tolerance = check::duration("--tolerance", &args.tolerance).map_err(|e| Error::Usage {
        message: e.to_string(),
    })?;
    let body = read_body(&args.data, MAX_BODY)?;
    if !tolerance.is_zero() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let off = now.abs_diff(args.timestamp);
        if off > tolerance.as_secs() {
            return Err(Error::Unverified {
                message: format!(
                    "timestamp {} is {off} s away from now, more than --tolerance {} (replayed or a wrong clock?)",
                    args.timestamp, args.tolerance
                ),
            });
        }
    }
    match sign::verify(&keys, &args.id, args.timestamp, &body, &args.signature) {
        Some(i) => {
            out(format_args!(
                "valid: signed with secret {} of {}",
                i + 1,
                keys.len()
            ))?;
            Ok(exit::OK)
        }
        None => Err(Error::Unverified {
            message: format!(
                "signature does not match: no v1 signature in it was made with {} over this id, timestamp and body ({} bytes)",
                if keys.len() == 1 {
                    "the secret".to_owned()
                } else {
                    format!("any of the {} secrets", keys.len())
                },
                body.len()
            ),
        }),
    }
}
