//! Alerts: when a message dead-letters, or an endpoint opens, is disabled or recovers, the daemon
//! posts a JSON event to `alert_url` from its own thread (`webhookd-alerts`), so deliveries never
//! wait for it. Slack-compatible `{"text": ...}` by default, the whole event with
//! `alert_format = "json"`.
//!
//! Rate-limited: at most `BURST` alerts at once and `PER_MINUTE` a minute after that; the ones
//! over the limit are counted and the count is told in the next alert that goes out. An alert is
//! attempted once (a chat webhook is not a queue to fill); a failure is logged.

use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde_json::json;

use crate::config::{AlertConfig, AlertFormat, HttpConfig};
use crate::deliver::http::Http;
use crate::error::Result;

const BURST: f64 = 10.0;
const PER_MINUTE: f64 = 10.0;
/// Alerts waiting for the thread; more are counted as suppressed.
const QUEUE: usize = 256;

/// One event to tell an operator about.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    /// `dead_letter`, `endpoint_opened`, `endpoint_disabled`, `endpoint_recovered`.
    pub(crate) event: &'static str,
    pub(crate) text: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) message: Option<String>,
}

enum Msg {
    Alert(Alert),
    Config(Option<AlertConfig>),
    /// Shutting down: send nothing after this time.
    StopBy(Instant),
}

/// The alert thread.
pub(crate) struct Alerter {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Alerter {
    /// Starts the thread (also without a URL: a reload may set one).
    ///
    /// # Errors
    /// `Spawn`, or `CaFile` from the HTTP client.
    pub(crate) fn start(
        config: Option<AlertConfig>,
        http: &HttpConfig,
        egress: &crate::egress::Policy,
    ) -> Result<Alerter> {
        // alert_url passes the same egress guard as every delivery.
        let client = Http::new(http, egress, 1)?;
        let (tx, rx) = bounded(QUEUE);
        let thread = crate::threads::spawn("webhookd-alerts", move || run(&rx, config, &client))?;
        Ok(Alerter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues an alert; never blocks.
    pub(crate) fn send(&self, alert: Alert) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Alert(alert)) {
                log::debug!("alert queue full: alert dropped");
            }
        }
    }

    /// Replaces the alert URL and format (reload).
    pub(crate) fn set_config(&self, config: Option<AlertConfig>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Config(config));
        }
    }

    /// Sends what is queued (within the rate limit) until `deadline`, then ends the thread. A
    /// post still running at the deadline is left to the process exit (joining it would let a
    /// slow alert receiver stretch the shutdown); that is said once.
    pub(crate) fn stop(mut self, deadline: Instant) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::StopBy(deadline));
        }
        let Some(t) = self.thread.take() else { return };
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if !t.is_finished() {
            log::warn!("stopping without waiting for the alert being posted to alert_url");
            return;
        }
        if t.join().is_err() {
            log::error!("webhookd-alerts panicked");
        }
    }
}

fn run(rx: &Receiver<Msg>, mut config: Option<AlertConfig>, client: &Http) {
    let mut tokens = BURST;
    let mut refilled = Instant::now();
    let mut suppressed = 0u64;
    let mut stop_by = None;
    let mut unsent = 0u64;
    for msg in rx {
        let alert = match msg {
            Msg::Config(c) => {
                config = c;
                continue;
            }
            Msg::StopBy(t) => {
                stop_by = Some(t);
                continue;
            }
            Msg::Alert(a) => a,
        };
        let Some(cfg) = &config else { continue };
        if stop_by.is_some_and(|t| Instant::now() >= t) {
            unsent += 1;
            continue;
        }
        tokens = (tokens + refilled.elapsed().as_secs_f64() * PER_MINUTE / 60.0).min(BURST);
        refilled = Instant::now();
        if tokens < 1.0 {
            suppressed += 1;
            continue;
        }
        tokens -= 1.0;
        let body = render(&alert, cfg.format, suppressed);
        suppressed = 0;
        match client.post_json(&cfg.url, body.as_bytes()) {
            Ok(code) if (200..300).contains(&code) => {
                log::debug!("alert {} posted to {}", alert.event, cfg.url);
            }
            Ok(code) => log::warn!("alert_url {} answered HTTP {code}", cfg.url),
            Err(e) => log::warn!("cannot post alert to {}: {e}", cfg.url),
        }
    }
    if unsent > 0 {
        log::warn!(
            "{} not sent: the daemon stopped",
            crate::text::count(unsent, "alert")
        );
    }
}

fn render(a: &Alert, format: AlertFormat, suppressed: u64) -> String {
    let mut text = format!("webhookd: {}", a.text);
    if suppressed > 0 {
        text.push_str(&format!(
            " ({suppressed} earlier alerts suppressed by the rate limit)"
        ));
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    match format {
        AlertFormat::Slack => json!({ "text": text }).to_string(),
        AlertFormat::Json => json!({
            "event": a.event,
            "text": text,
            "endpoint": a.endpoint,
            "message": a.message,
            "host": host,
            "suppressed": suppressed,
            "at": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_and_json_bodies() {
        let a = Alert {
            event: "endpoint_opened",
            text: "endpoint billing opened".into(),
            endpoint: Some("billing".into()),
            message: None,
        };
        let slack: serde_json::Value =
            serde_json::from_str(&render(&a, AlertFormat::Slack, 0)).unwrap();
        assert_eq!(slack, json!({"text": "webhookd: endpoint billing opened"}));
        let full: serde_json::Value =
            serde_json::from_str(&render(&a, AlertFormat::Json, 3)).unwrap();
        assert_eq!(full["event"], "endpoint_opened");
        assert_eq!(full["endpoint"], "billing");
        assert_eq!(full["suppressed"], 3);
        assert!(full["text"].as_str().unwrap().contains("3 earlier alerts"));
    }
}
