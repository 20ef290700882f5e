//! A progress bar for long work (indicatif), and lines printed beside it.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps on stderr, labelled `label`; hidden when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar at position `done` of `len` steps.
    pub fn new(len: usize, done: usize, label: &str) -> Self {
        let template = format!(
            "{label} {{bar:30}} {{pos}}/{{len}}  {{msg}}  [{{elapsed_precise}} < {{eta_precise}}]"
        );
        let bar = ProgressBar::new(len as u64)
            .with_style(ProgressStyle::with_template(&template).expect("a valid template"));
        bar.set_position(done as u64);
        Self { bar }
    }

    /// One step done, with `message` beside the bar (e.g. the latest loss).
    pub fn step(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
        self.bar.inc(1);
    }

    /// Prints `line` above the bar (on stderr when the bar is hidden, which drops its own
    /// printlns).
    pub fn say(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Removes the bar (at the end of the work, or before an error is printed).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
