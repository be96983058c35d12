//! The server's handler: the dashboard's paths to `ui`, every other one to `routes` after the
//! token check. The socket, which trusts its clients, refuses requests a web page sent: with
//! the socket forwarded to a browser's machine (`ssh -L`), any page could otherwise use it.

use super::problem::Problem;
use super::routes;
use super::stream::Peer;
use super::wire::{Handler, Request, Response};
use super::Context;

impl Handler for Context {
    fn admit(&self, peer: Peer, path: &str, authorization: Option<&str>) -> Option<Response> {
        // The dashboard's requests carry its session cookie instead (checked when handled).
        if peer != Peer::Tcp || matches!(path, "/healthz" | "/readyz") || super::ui::is_ui(path) {
            return None;
        }
        let tokens = self.config.tokens();
        if tokens.known(authorization) {
            return None;
        }
        self.metrics.request("unauthorized", 401);
        Some(tokens.unauthorized().response())
    }

    fn handle(&self, request: Request) -> Response {
        if super::ui::is_ui(&request.path) {
            return self.ui(request);
        }
        if request.peer == Peer::Unix && from_a_web_page(&request) {
            self.metrics.request("unauthorized", 403);
            return Problem::new(403, "forbidden")
                .detail(
                    "a web page's request to the API socket (Origin, Sec-Fetch-Site) is refused: \
                     the socket trusts its clients, a forwarded one would trust every page the \
                     browser opens; use the dashboard at /ui/",
                )
                .response();
        }
        let resolved = routes::resolve(&request.path);
        let (route, answer) = match self.authorize(&request, resolved.map(|(p, _, _)| p)) {
            Ok(()) => self.route(&request, resolved),
            Err(p) => ("unauthorized", Err(p)),
        };
        let response = answer.unwrap_or_else(|p| p.response());
        self.metrics.request(route, response.status);
        response
    }
}

/// Whether a browser says a page sent this request (a fetch, a form): `Origin`, or a
/// `Sec-Fetch-Site` other than `none` (an address the user typed). Programs send neither.
fn from_a_web_page(r: &Request) -> bool {
    r.header("origin").is_some() || r.header("sec-fetch-site").is_some_and(|s| s != "none")
}
