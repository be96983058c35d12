//! Random bytes from the system's source (`/dev/urandom`): API tokens, endpoint secrets, the
//! secrets key and its nonces.

use std::io::Read;

use crate::error::{Error, Result};

/// Fills `buf` with random bytes.
///
/// # Errors
/// `ReadInput` when the system's random source cannot be read.
pub(crate) fn fill(buf: &mut [u8]) -> Result<()> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|source| Error::ReadInput {
            what: "/dev/urandom".into(),
            source,
        })
}
