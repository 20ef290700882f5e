//! Writing diagrams: the DOT text always, the SVG when Graphviz's `dot` program is installed.
//!
//! Graphviz is run as a subprocess (`dot -Tsvg`, DOT on its standard input) rather than linked:
//! nothing needs it to build, and a machine without it still gets the DOT files, which any
//! Graphviz viewer or <https://graphviz.org> tool renders later.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use unfold_nn::{Error, Result};

use crate::graph::Graph;
use crate::topology::Topology;
use crate::write_atomic;

/// What became of a diagram's SVG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Svg {
    /// Rendered by Graphviz and written here.
    Written(PathBuf),
    /// Not rendered: the `dot` program was not found. The DOT file is there to render later.
    NoGraphviz {
        /// The program that was looked for.
        program: String,
    },
}

impl std::fmt::Display for Svg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Svg::Written(path) => write!(f, "{}", path.display()),
            Svg::NoGraphviz { program } => write!(
                f,
                "no SVG: Graphviz's `{program}` program was not found (install Graphviz, e.g. \
                 `apt-get install graphviz`, to render; the .dot file can be rendered later \
                 with `dot -Tsvg FILE.dot -o FILE.svg`)"
            ),
        }
    }
}

/// The files written for one diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagramFiles {
    /// The Graphviz source, `<stem>.dot`.
    pub dot: PathBuf,
    /// The rendering, `<stem>.svg`, or why there is none.
    pub svg: Svg,
}

/// Whether Graphviz's `dot` program can be run.
pub fn dot_available() -> bool {
    Command::new("dot")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes diagrams into one directory.
#[derive(Debug, Clone)]
pub struct DiagramWriter {
    dir: PathBuf,
    program: OsString,
}

impl DiagramWriter {
    /// A writer into `dir` (created when the first file is written), rendering with the `dot`
    /// program found on the `PATH`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            program: "dot".into(),
        }
    }

    /// Renders with this Graphviz program instead of `dot` (a full path, or `neato`, ...).
    pub fn with_program(mut self, program: impl AsRef<OsStr>) -> Self {
        self.program = program.as_ref().to_owned();
        self
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `<stem>.dot` and, if Graphviz is installed, `<stem>.svg`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a file cannot be written, or if Graphviz is there but fails on the DOT.
    pub fn write(&self, stem: &str, graph: &Graph) -> Result<DiagramFiles> {
        let dot_text = graph.to_dot();
        let dot = self.dir.join(format!("{stem}.dot"));
        write_atomic(&dot, dot_text.as_bytes())?;
        let svg_path = self.dir.join(format!("{stem}.svg"));
        let svg = match self.render(&dot_text, &svg_path)? {
            Some(svg) => {
                write_atomic(&svg_path, &svg)?;
                Svg::Written(svg_path)
            }
            None => Svg::NoGraphviz {
                program: self.program.to_string_lossy().into_owned(),
            },
        };
        Ok(DiagramFiles { dot, svg })
    }

    /// Writes a topology's circuit (`<slug>_circuit`) and its unfolding over `tau` steps
    /// (`<slug>_unfolded`).
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write), and [`Error::Config`] if `tau` is 0.
    pub fn write_topology(&self, topology: &Topology, tau: usize) -> Result<[DiagramFiles; 2]> {
        let unfolded = topology.try_unfold(tau)?;
        let slug = topology.slug();
        Ok([
            self.write(&format!("{slug}_circuit"), &topology.circuit())?,
            self.write(&format!("{slug}_unfolded"), &unfolded)?,
        ])
    }

    /// Runs Graphviz on `dot`: the SVG bytes, or `None` when the program is not installed.
    /// `target` only names the file in errors.
    fn render(&self, dot: &str, target: &Path) -> Result<Option<Vec<u8>>> {
        let failed = |source: std::io::Error| Error::Io {
            action: "rendering with Graphviz",
            path: target.to_path_buf(),
            source,
        };
        let child = Command::new(&self.program)
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        // The DOT text is small (a few kB), far below a pipe's buffer: writing all of it before
        // reading the output cannot deadlock. A program that exits early closes the pipe; its
        // exit status and message below say why.
        let written = child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(dot.as_bytes());
        if let Err(e) = written {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(failed(e));
            }
        }
        let output = child.wait_with_output().map_err(failed)?;
        if !output.status.success() || output.stdout.is_empty() {
            return Err(failed(std::io::Error::other(format!(
                "`{}` exited with {}: {}",
                self.program.to_string_lossy(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))));
        }
        Ok(Some(output.stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("unfold-viz-render-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn missing_graphviz_still_writes_dot_and_says_why() {
        let dir = scratch("missing");
        let writer = DiagramWriter::new(&dir).with_program("unfold-no-such-graphviz-program");
        let files = writer.write_topology(&Topology::HiddenToHidden, 3).unwrap();
        for file in &files {
            let dot = std::fs::read_to_string(&file.dot).unwrap();
            assert!(dot.starts_with("digraph"), "{dot}");
            assert!(matches!(file.svg, Svg::NoGraphviz { .. }));
            assert!(file.svg.to_string().contains("was not found"));
        }
        assert!(!dir.join("hidden_to_hidden_circuit.svg").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failing_graphviz_is_an_io_error_naming_the_file() {
        // `false` exists everywhere CI runs and exits 1 without output.
        let dir = scratch("failing");
        let writer = DiagramWriter::new(&dir).with_program("false");
        let err = writer
            .write("broken", &Topology::SequenceToOne.circuit())
            .unwrap_err();
        assert!(err.to_string().contains("broken.svg"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
