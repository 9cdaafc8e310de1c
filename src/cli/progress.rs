//! A progress line for long transfers, on standard error: redrawn in place on
//! a terminal, plain lines every few seconds otherwise (CI logs).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    tty: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    done: u64,
    started: Instant,
    last_shown: Option<Instant>,
    /// The count the last line showed: a plain (non-terminal) final line
    /// that would repeat it is not written.
    shown_done: Option<u64>,
}

/// How often a terminal line is redrawn, and how often a plain line is written.
const TTY_EVERY: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Self::with_tty(label, total, std::io::stderr().is_terminal())
    }

    pub fn with_tty(label: impl Into<String>, total: u64, tty: bool) -> Self {
        Self {
            label: label.into(),
            total,
            tty,
            state: Mutex::new(State { done: 0, started: Instant::now(), last_shown: None, shown_done: None }),
        }
    }

    /// `n` more bytes done.
    pub fn advance(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.done = (s.done + n).min(self.total);
        let every = if self.tty { TTY_EVERY } else { PLAIN_EVERY };
        if s.last_shown.is_none_or(|t| t.elapsed() >= every) {
            s.last_shown = Some(Instant::now());
            self.show(&mut s, false);
        }
    }

    /// `n` bytes to be sent again (a retried part).
    pub fn rewind(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.done = s.done.saturating_sub(n);
    }

    /// The final line.
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.tty && s.shown_done == Some(s.done) {
            return;
        }
        self.show(&mut s, true);
    }

    fn show(&self, s: &mut State, last: bool) {
        s.shown_done = Some(s.done);
        let line = render(&self.label, s.done, self.total, s.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}\x1b[K{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// `label  12.0 MiB / 1.0 GiB  1%  40.1 MiB/s  ETA 25s`.
pub fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if done >= total {
        format!("in {}", clock(secs))
    } else if rate > 0.0 {
        format!("ETA {}", clock((total - done) as f64 / rate))
    } else {
        "ETA -".to_owned()
    };
    format!("{label}  {} / {}  {percent}%  {}/s  {eta}", size(done as f64), size(total as f64), size(rate))
}

fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{v:.0} {}", UNITS[unit]) } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_bytes_rate_and_eta() {
        let mib = 1024 * 1024;
        assert_eq!(
            render("up", 256 * mib, 1024 * mib, Duration::from_secs(2)),
            "up  256.0 MiB / 1.0 GiB  25%  128.0 MiB/s  ETA 6s"
        );
        assert_eq!(render("up", 0, 10, Duration::ZERO), "up  0 B / 10 B  0%  0 B/s  ETA -");
        assert_eq!(render("up", 10, 10, Duration::from_secs(125)), "up  10 B / 10 B  100%  0 B/s  in 2m05s");
        assert_eq!(render("up", 0, 0, Duration::ZERO), "up  0 B / 0 B  100%  0 B/s  in 0s");
    }
}
