//! The signal thread: turns SIGTERM/SIGINT (stop) and SIGHUP (reload) into messages for the
//! dispatcher, and does nothing else. The only module that touches signals.

use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::Control;
use crate::error::{Error, Result};
use crate::threads::spawn;

pub(super) struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: JoinHandle<()>,
}

impl SignalThread {
    /// Starts `webhookd-signals`.
    ///
    /// # Errors
    /// `Signals`, `Spawn`.
    pub(super) fn start(control: Sender<Control>) -> Result<SignalThread> {
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|source| Error::Signals { source })?;
        let handle = signals.handle();
        let thread = spawn("webhookd-signals", move || {
            for signal in signals.forever() {
                let msg = match signal {
                    SIGTERM => Control::Stop("SIGTERM"),
                    SIGINT => Control::Stop("SIGINT"),
                    _ => Control::Reload,
                };
                if control.send(msg).is_err() {
                    return;
                }
            }
        })?;
        Ok(SignalThread { handle, thread })
    }

    pub(super) fn stop(self) {
        self.handle.close();
        if self.thread.join().is_err() {
            log::error!("webhookd-signals panicked");
        }
    }
}
