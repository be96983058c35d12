//! `webhookd token NAME --scope S`: a new API token, printed once, and the line that stores its
//! hash in `api.tokens_file`.

use serde::Serialize;

use super::out;
use crate::api::{new_token, Scope};
use crate::cli::TokenArgs;
use crate::error::{exit, Error, Result};

#[derive(Serialize)]
struct TokenJson<'a> {
    name: &'a str,
    scopes: Vec<&'static str>,
    token: String,
    line: String,
}

/// Runs `token`.
///
/// # Errors
/// `Usage` for a bad name, `ReadInput` when no randomness can be read.
pub(crate) fn run(args: &TokenArgs) -> Result<u8> {
    let name = args.name.as_str();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(Error::Usage {
            message: format!(
                "NAME: {:?} must be printable ASCII without spaces or '#'",
                crate::text::escape(name)
            ),
        });
    }
    let mut scopes: Vec<Scope> = Vec::new();
    for s in
        Scope::parse_list(&args.scopes.join(",")).map_err(|message| Error::Usage { message })?
    {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let (token, line) = new_token(name, &scopes)?;
    if args.json {
        let v = TokenJson {
            name,
            scopes: scopes.iter().map(|s| s.as_str()).collect(),
            token,
            line,
        };
        out(serde_json::to_string(&v).expect("a view serializes"))?;
    } else {
        out(format_args!(
            "token: {token}\nline:  {line}\n\nAdd the line to api.tokens_file and reload the daemon; the token is not shown again."
        ))?;
    }
    Ok(exit::OK)
}
