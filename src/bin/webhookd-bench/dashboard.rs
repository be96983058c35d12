//! The dashboard's requests with millions of messages kept: each data request a page makes, timed
//! on the daemon's socket with a logged-in session, as a browser would send them.

use std::time::Instant;

use super::api::{make_token, socket, Client, Target};
use super::work::{pct, Work};
use super::Bench;

impl Bench {
    /// Starts the daemon on `w` (its messages already stored) with an admin token, logs in, and
    /// times 20 of each request of the dashboard's pages.
    pub(super) fn dashboard_latency(&mut self, w: &Work, retained: usize) {
        let (token, file) = make_token(w, "admin");
        w.append_config(&format!(
            "[api]\ntokens_file = {:?}\n",
            file.display().to_string()
        ));
        let mut d = w.daemon();
        let mut c = Client::connect(&Target::Unix(socket(&w.db)));
        let login = c.exchange(
            "POST",
            "/ui/login",
            "content-type: application/json\r\n",
            serde_json::json!({ "token": token }).to_string().as_bytes(),
        );
        let session: serde_json::Value = serde_json::from_slice(&login.body).unwrap_or_default();
        let (Some(cookie), Some(csrf)) = (login.cookie, session["csrf"].as_str()) else {
            self.failures
                .push(format!("dashboard: login answered {}", login.status));
            d.stop();
            return;
        };
        let get = format!("cookie: {cookie}\r\n");
        let post = format!(
            "cookie: {cookie}\r\nx-csrf-token: {csrf}\r\ncontent-type: application/json\r\n"
        );
        let page = c.exchange("GET", "/ui/api/messages?limit=50", &get, b"");
        let listed: serde_json::Value = serde_json::from_slice(&page.body).unwrap_or_default();
        let uuid = listed["messages"][0]["uuid"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let show = format!("/ui/api/messages/{uuid}");
        let name = format!("dashboard with {retained} delivered retained");
        let requests: Vec<(&str, &str, &str, &[u8])> = vec![
            ("page /ui/", "GET", "/ui/", b""),
            ("overview: status", "GET", "/ui/api/status", b""),
            ("overview: stats", "GET", "/ui/api/stats", b""),
            ("endpoints", "GET", "/ui/api/endpoints", b""),
            (
                "endpoint's attempts",
                "GET",
                "/ui/api/endpoints/bench/attempts",
                b"",
            ),
            (
                "messages, page of 50",
                "GET",
                "/ui/api/messages?limit=50",
                b"",
            ),
            (
                "messages of an endpoint",
                "GET",
                "/ui/api/messages?endpoint=bench&limit=50",
                b"",
            ),
            (
                "delivered, page of 50",
                "GET",
                "/ui/api/messages?state=delivered&limit=50",
                b"",
            ),
            (
                "dead letters, page of 50",
                "GET",
                "/ui/api/dlq?limit=50",
                b"",
            ),
            ("a message", "GET", &show, b""),
            (
                "bulk count (dry run)",
                "POST",
                "/ui/api/dlq/retry",
                br#"{"all":true,"dry_run":true}"#,
            ),
        ];
        for (label, method, path, body) in requests {
            let headers = if method == "GET" { &get } else { &post };
            let mut lat: Vec<u64> = Vec::new();
            for i in 0..21 {
                let t = Instant::now();
                let a = c.exchange(method, path, headers, body);
                if a.status != 200 {
                    self.failures
                        .push(format!("dashboard: {label}: {}", a.status));
                    break;
                }
                if i > 0 {
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            lat.sort_unstable();
            self.row(
                &name,
                &format!("{label} p50"),
                pct(&lat, 50.0) as f64 / 1000.0,
                "ms",
                "<= 100",
            );
            self.row(
                &name,
                &format!("{label} max"),
                *lat.last().unwrap_or(&0) as f64 / 1000.0,
                "ms",
                "",
            );
        }
        d.stop();
    }
}
