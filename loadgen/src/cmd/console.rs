//! Live progress on the terminal while a run goes: on a terminal one line redrawn each second;
//! elsewhere a plain line every few seconds, so CI logs stay readable; nothing with `--quiet`.
//! Notices (a shard failed) always print.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use reports::RunBuilder;

use crate::run::progress::Progress;
use crate::run::Observer;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// A redrawn line (stderr is a terminal).
    Tty,
    /// A plain line every `every`.
    Lines(Duration),
}

impl Mode {
    /// Redrawn on a terminal, plain lines every 5 s elsewhere.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Lines(Duration::from_secs(5))
        }
    }
}

/// The console a run reports to.
#[derive(Debug)]
pub struct Console {
    mode: Mode,
    progress: Progress,
    last_line: Option<Instant>,
    drawn: bool,
}

impl Console {
    /// A console for a run planned to last `planned` (`requests`: it sends HTTP requests).
    pub fn new(mode: Mode, planned: Duration, requests: bool) -> Console {
        Console {
            mode,
            progress: Progress::new(planned, requests),
            last_line: None,
            drawn: false,
        }
    }

    /// Ends a redrawn line before other output.
    fn end_line(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

impl Observer for Console {
    fn tick(&mut self, builder: &RunBuilder, origin: Instant) {
        let now = Instant::now();
        match self.mode {
            Mode::Quiet => {}
            Mode::Tty => {
                let line = self.progress.line(builder, origin, now);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                self.drawn = true;
            }
            Mode::Lines(every) => {
                if self
                    .last_line
                    .is_none_or(|t| now.duration_since(t) >= every)
                {
                    self.last_line = Some(now);
                    eprintln!("{}", self.progress.line(builder, origin, now));
                }
            }
        }
    }

    fn notice(&mut self, message: &str) {
        self.end_line();
        eprintln!("{message}");
    }

    fn finish(&mut self) {
        self.end_line();
    }
}
