//! Progress on the terminal (indicatif), shown only when stderr is one: `vbench bench` and
//! each rate of `vbench apply` get a request bar; apply's health wait gets a spinner.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::load::{Progress, RequestRecord};

/// A request bar for one run: done/total, and how many failed so far.
pub struct RequestBar {
    bar: indicatif::ProgressBar,
    failed: AtomicU64,
}

impl RequestBar {
    /// A bar labelled `label`, or `None` when stderr is not a terminal (logs, CI, pipes).
    pub fn on_terminal(label: &str) -> Option<RequestBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let style = indicatif::ProgressStyle::with_template(&format!(
            "{label} {{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} requests {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        Some(RequestBar {
            bar: indicatif::ProgressBar::new(0).with_style(style),
            failed: AtomicU64::new(0),
        })
    }
}

impl Progress for RequestBar {
    fn start(&self, total: u64) {
        self.bar.set_length(total);
    }
    fn request_done(&self, r: &RequestRecord) {
        if !r.ok {
            let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
            self.bar.set_message(format!("({failed} failed)"));
        }
        self.bar.inc(1);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A spinner with a message, or nothing when stderr is not a terminal.
pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub fn on_terminal(message: &str) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let s = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        s.set_message(message.to_string());
        s.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(s))
    }

    pub fn set_message(&self, message: String) {
        if let Some(s) = &self.0 {
            s.set_message(message);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.finish_and_clear();
        }
    }
}
