//! The server's handler: the dashboard's paths to `ui`, every other one to `routes` after the
//! token check.

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
