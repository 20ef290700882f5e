//! Pictures of recurrent networks and their training, for unfold.
//!
//! - [`graph`], [`topology`]: each topology as a folded circuit (the recurrent edge through a
//!   one-step delay, the black square) and unfolded over τ steps, as a small graph model
//!   ([`Graph`]: nodes `x(t)`, `h(t)`, `o(t)`, `L(t)`, `y(t)`, edges `U`, `W`, `V`) with
//!   [`Graph::to_dot`] for Graphviz.
//! - [`render`]: writes the DOT and, when Graphviz's `dot` program is installed, the SVG.
//! - [`curves`]: training and validation loss per step, as CSV and an SVG plot.
//! - [`hidden`], [`pca`]: what a character language model's hidden units do over a stretch of
//!   text (a heatmap) and where its states lie (a 2-D PCA projection coloured by the next
//!   character).
//! - [`scaling`]: time per training step against tokens per step on log-log axes, next to the
//!   slope-1 line of linear scaling.
//!
//! Plots are SVG, drawn with `plotters` (SVG back end only: no system font or image library is
//! needed to build). Data goes in as plain `Vec`s, so only [`HiddenStates::from_elman`] touches
//! a Burn backend.
#![warn(missing_docs)]

mod chart;
pub mod curves;
pub mod graph;
pub mod hidden;
pub mod pca;
pub mod render;
pub mod scaling;
pub mod topology;

pub use curves::{write_loss_curves, LossCurveFiles, LossHistory};
pub use graph::{Edge, Graph, Node, NodeKind};
pub use hidden::{
    write_hidden_heatmap, write_hidden_pca, HeatmapConfig, HiddenStates, PcaPlotConfig,
};
pub use pca::Pca;
pub use render::{dot_available, DiagramFiles, DiagramWriter, Svg};
pub use scaling::{write_scaling_plot, ScalingSeries};
pub use topology::{CellNames, Feedback, Topology};

use std::fs;
use std::io::Write as _;
use std::path::Path;

use unfold_nn::{Error, Result};

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so that a reader
/// (or a crash) never sees half a file. Creates the parent directory if needed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("not a file path")))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    let mut file = fs::File::create(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)
}
