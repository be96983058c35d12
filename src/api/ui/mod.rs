//! The dashboard under `/ui/`: its assets (embedded in the binary), the login that turns an API
//! token into a session cookie, and `/ui/api/...`, every `/v1/...` route for the session's
//! page (read scope to view, admin to act; a CSRF token on every change).
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from `/ui/` only,
//! no inline script), `nosniff` and no framing. The pages build their text with `textContent`
//! (never markup from data): receiver responses, headers and bodies are hostile.

mod session;

use serde::Serialize;
use serde_json::Value;

use super::auth::Scope;
use super::problem::Problem;
use super::stream::Peer;
use super::wire::{Request, Response};
use super::Context;
pub(crate) use session::Sessions;

/// The dashboard's files, embedded: name under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../../../ui/index.html")),
    ("style.css", CSS, include_bytes!("../../../ui/style.css")),
    ("app.js", JS, include_bytes!("../../../ui/app.js")),
    ("api.js", JS, include_bytes!("../../../ui/api.js")),
    ("chart.js", JS, include_bytes!("../../../ui/chart.js")),
    ("format.js", JS, include_bytes!("../../../ui/format.js")),
    ("overview.js", JS, include_bytes!("../../../ui/overview.js")),
    (
        "endpoints.js",
        JS,
        include_bytes!("../../../ui/endpoints.js"),
    ),
    ("messages.js", JS, include_bytes!("../../../ui/messages.js")),
    ("dlq.js", JS, include_bytes!("../../../ui/dlq.js")),
    ("message.js", JS, include_bytes!("../../../ui/message.js")),
];
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// What the browser may load and run: only the dashboard's own files.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Whether a path is the dashboard's.
pub(crate) fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

#[derive(Serialize)]
struct SessionJson<'a> {
    name: &'a str,
    scopes: Vec<&'static str>,
    csrf: &'a str,
}

impl SessionJson<'_> {
    fn new<'a>(login: &'a super::auth::Login, csrf: &'a str) -> SessionJson<'a> {
        let mut scopes: Vec<&'static str> = login.scopes.iter().map(|s| s.as_str()).collect();
        if login.allows(Scope::Read) && !scopes.contains(&"read") {
            scopes.push("read");
        }
        SessionJson {
            name: &login.name,
            scopes,
            csrf,
        }
    }
}

impl Context {
    /// Answers a request under `/ui`.
    pub(super) fn ui(&self, r: Request) -> Response {
        let (route, answer) = self.ui_answer(r);
        let mut response = answer.unwrap_or_else(|p| p.response());
        self.metrics.request(route, response.status);
        let h = &mut response.headers;
        h.push(("content-security-policy", CSP.into()));
        h.push(("x-content-type-options", "nosniff".into()));
        h.push(("x-frame-options", "DENY".into()));
        h.push(("referrer-policy", "no-referrer".into()));
        h.push(("cross-origin-opener-policy", "same-origin".into()));
        if !h.iter().any(|(n, _)| *n == "cache-control") {
            h.push(("cache-control", "no-store".into()));
        }
        response
    }

    fn ui_answer(&self, r: Request) -> (&'static str, Result<Response, Problem>) {
        let get = matches!(r.method.as_str(), "GET" | "HEAD");
        let Some(rest) = r.path.strip_prefix("/ui/") else {
            let moved = Response {
                status: 308,
                content_type: HTML,
                headers: vec![("location", "/ui/".into())],
                body: b"<a href=\"/ui/\">/ui/</a>\n".to_vec(),
            };
            return ("ui", Ok(moved));
        };
        if let Some(api) = rest.strip_prefix("api/") {
            let path = format!("/v1/{api}");
            return self.ui_api(r, path);
        }
        let answer = match (rest, get) {
            ("login", false) if r.method == "POST" => self.login(&r),
            ("logout", false) if r.method == "POST" => self.logout(&r),
            ("session", true) => self.session(&r),
            ("login" | "logout", _) => Err(super::routes::not_allowed(&["POST"])),
            ("session", false) => Err(super::routes::not_allowed(&["GET"])),
            (name, true) => asset(if name.is_empty() { "index.html" } else { name }),
            (_, false) => Err(super::routes::not_allowed(&["GET"])),
        };
        ("ui", answer)
    }

    /// `POST /ui/login` `{"token": "..."}`: a session for a token with the read or admin scope.
    fn login(&self, r: &Request) -> Result<Response, Problem> {
        same_site(r)?;
        let tokens = self.config.tokens();
        if tokens.len() == 0 {
            return Err(Problem::new(503, "no tokens").detail(
                "the dashboard needs api.tokens_file: make a token with `webhookd token NAME \
                 --scope admin`, add its line to that file and reload",
            ));
        }
        let token = match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(mut o)) => match o.remove("token") {
                Some(Value::String(t)) => t,
                _ => return Err(super::routes::bad("token: expected a string").field("token")),
            },
            _ => return Err(super::routes::bad("the body must be {\"token\": \"...\"}")),
        };
        let Some(login) = tokens.login(&token) else {
            log::info!("dashboard: a login with an unknown token was refused");
            return Err(Problem::new(401, "unauthorized").detail("unknown token"));
        };
        if !login.allows(Scope::Read) {
            return Err(Problem::new(403, "forbidden").detail(format!(
                "token {} has neither the read nor the admin scope",
                login.name
            )));
        }
        // A login replaces the browser's session: the one its cookie names ends.
        self.sessions.end(r.header("cookie"));
        let (cookie, csrf) = self
            .sessions
            .start(&login)
            .map_err(|e| Problem::from_error(&e))?;
        log::info!("dashboard: token {} logged in", login.name);
        // Secure whenever the browser speaks HTTPS: our TLS, or a TLS-terminating proxy.
        let config = self.config();
        let secure = r.peer == Peer::Tcp
            && (config.api.tls.is_some()
                || config.api.allow_plaintext
                || r.header("x-forwarded-proto") == Some("https"));
        let mut response = super::routes::json(200, &SessionJson::new(&login, &csrf));
        response.headers.push((
            "set-cookie",
            format!(
                "{}={cookie}; Path=/ui/; Max-Age={}; HttpOnly; SameSite=Strict{}",
                session::COOKIE,
                session::LIFETIME.as_secs(),
                if secure { "; Secure" } else { "" }
            ),
        ));
        Ok(response)
    }

    fn session(&self, r: &Request) -> Result<Response, Problem> {
        let current = self.current(r)?;
        Ok(super::routes::json(
            200,
            &SessionJson::new(&current.login, &current.csrf),
        ))
    }

    fn logout(&self, r: &Request) -> Result<Response, Problem> {
        let current = self.current(r)?;
        csrf(r, &current)?;
        self.sessions.end(r.header("cookie"));
        let mut response = super::routes::json(200, &super::routes::Status { status: "ok" });
        response.headers.push((
            "set-cookie",
            format!(
                "{}=; Path=/ui/; Max-Age=0; HttpOnly; SameSite=Strict",
                session::COOKIE
            ),
        ));
        Ok(response)
    }

    fn current(&self, r: &Request) -> Result<session::Current, Problem> {
        self.sessions
            .find(r.header("cookie"), &self.config.tokens())
            .ok_or_else(|| {
                Problem::new(401, "unauthorized")
                    .detail("no session: log in with an API token (a session ends after 12 h, 1 h idle, at logout or a restart)")
            })
    }

    /// `/ui/api/X`: the route `/v1/X` for a session. Viewing needs read, anything else admin
    /// and the session's CSRF token.
    fn ui_api(&self, r: Request, path: String) -> (&'static str, Result<Response, Problem>) {
        let current = match self.current(&r) {
            Ok(c) => c,
            Err(p) => return ("unauthorized", Err(p)),
        };
        // Only GET is safe: every other method needs the CSRF token and this site.
        let change = r.method != "GET";
        if change {
            if let Err(p) = same_site(&r).and_then(|()| csrf(&r, &current)) {
                log::info!(
                    "dashboard: token {} {} {}: refused, {}",
                    current.login.name,
                    r.method,
                    crate::text::escape(&path),
                    p.status()
                );
                return ("unauthorized", Err(p));
            }
        }
        let request = Request { path, ..r };
        let resolved = super::routes::resolve(&request.path);
        // The scope the route needs over TCP, from the token the session holds.
        let needed = super::routes::needed_scope(resolved.map(|(p, _, _)| p), &request.method);
        if let Some(needed) = needed.filter(|n| !current.login.allows(*n)) {
            if change {
                log::info!(
                    "dashboard: token {} {} {}: refused, 403 (no {} scope)",
                    current.login.name,
                    request.method,
                    crate::text::escape(&request.path),
                    needed.as_str()
                );
            }
            return (
                "unauthorized",
                Err(Problem::new(403, "forbidden").detail(format!(
                    "token {} lacks the {} scope",
                    current.login.name,
                    needed.as_str()
                ))),
            );
        }
        let (route, answer) = self.route(&request, resolved);
        if change {
            // Who did what: the dashboard's changes in the log, by token name.
            let status = answer.as_ref().map_or_else(|p| p.status(), |a| a.status);
            log::info!(
                "dashboard: token {} {} {}: {status}",
                current.login.name,
                request.method,
                crate::text::escape(&request.path)
            );
        }
        (route, answer)
    }
}

fn asset(name: &str) -> Result<Response, Problem> {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Err(Problem::new(404, "not found").detail("no such page"));
    };
    Ok(Response {
        status: 200,
        content_type,
        headers: vec![("cache-control", "no-cache".into())],
        body: bytes.to_vec(),
    })
}

/// Refuses a change a browser says comes from another origin: by `Sec-Fetch-Site` (every
/// current browser sends it), else by an `Origin` that is neither this `Host` nor the
/// `X-Forwarded-Host` a proxy in front set (a page of another site cannot set that header
/// without a CORS preflight, which is never allowed here).
pub(super) fn same_site(r: &Request) -> Result<(), Problem> {
    let refused = |why: &str| Err(Problem::new(403, "forbidden").detail(why.to_owned()));
    if let Some(site) = r.header("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => refused("a request from another site (Sec-Fetch-Site)"),
        };
    }
    if let Some(origin) = r.header("origin") {
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        let ours = [r.header("host"), r.header("x-forwarded-host")];
        if !ours.contains(&Some(origin_host)) {
            return refused("a request from another origin (Origin)");
        }
    }
    Ok(())
}

/// The session's CSRF token in `X-CSRF-Token`.
fn csrf(r: &Request, current: &session::Current) -> Result<(), Problem> {
    match r.header("x-csrf-token") {
        Some(t) if session::same(t, &current.csrf) => Ok(()),
        _ => Err(Problem::new(403, "forbidden")
            .detail("missing or wrong X-CSRF-Token (reload the page)")),
    }
}
