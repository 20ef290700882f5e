//! Training curves: train and validation loss per step, as `loss.csv` and `loss.svg`.
//!
//! ```no_run
//! use unfold_viz::{write_loss_curves, LossHistory};
//!
//! let mut history = LossHistory::new();
//! for step in 1..=100 {
//!     history.push_train(step, 4.2 / step as f64);
//!     if step % 25 == 0 {
//!         history.push_val(step, 4.4 / step as f64);
//!     }
//! }
//! let files = write_loss_curves("runs/demo", &history)?;
//! println!("{}", files.svg.display());
//! # Ok::<(), unfold_nn::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use unfold_nn::{Error, Result};

use crate::chart::{draw_legend, draw_marked_line};
use crate::write_atomic;

/// File name of the loss table.
pub const LOSS_CSV: &str = "loss.csv";
/// File name of the loss plot.
pub const LOSS_SVG: &str = "loss.svg";

/// Loss values recorded during training: `(step, loss)` points for the training and the
/// validation set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossHistory {
    /// Training loss, usually one point per optimiser step.
    pub train: Vec<(usize, f64)>,
    /// Validation loss, one point per evaluation.
    pub val: Vec<(usize, f64)>,
}

impl LossHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the training loss at `step`.
    pub fn push_train(&mut self, step: usize, loss: f64) {
        self.train.push((step, loss));
    }

    /// Records the validation loss at `step`.
    pub fn push_val(&mut self, step: usize, loss: f64) {
        self.val.push((step, loss));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.train.is_empty() && self.val.is_empty()
    }

    /// The table written to [`LOSS_CSV`]: a header `step,train_loss,val_loss`, then one row
    /// per step that has either loss, in step order, with an empty cell where a step has only
    /// one of them. A later point for the same step replaces an earlier one.
    pub fn to_csv(&self) -> String {
        // Hand-written rather than through the `csv` crate: the cells are integers and floats
        // only, which never need quoting or escaping.
        let mut rows: BTreeMap<usize, (Option<f64>, Option<f64>)> = BTreeMap::new();
        for &(step, loss) in &self.train {
            rows.entry(step).or_default().0 = Some(loss);
        }
        for &(step, loss) in &self.val {
            rows.entry(step).or_default().1 = Some(loss);
        }
        let cell = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let mut csv = String::from("step,train_loss,val_loss\n");
        for (step, (train, val)) in rows {
            let _ = writeln!(csv, "{step},{},{}", cell(train), cell(val));
        }
        csv
    }
}

/// The files [`write_loss_curves`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossCurveFiles {
    /// `<dir>/loss.csv`.
    pub csv: PathBuf,
    /// `<dir>/loss.svg`.
    pub svg: PathBuf,
}

/// Writes `history` to `dir` as [`LOSS_CSV`] (see [`LossHistory::to_csv`]) and as the plot
/// [`LOSS_SVG`]: loss against step, training as a thin line, validation as a line with
/// markers. Both files are replaced atomically, so calling this at every evaluation keeps an
/// up-to-date picture of a run in progress.
///
/// Non-finite losses (a diverged step) stay in the CSV and are left out of the plot.
///
/// # Errors
///
/// [`Error::Empty`] if `history` has no finite loss to plot; [`Error::Io`] if a file cannot
/// be written.
pub fn write_loss_curves(dir: impl AsRef<Path>, history: &LossHistory) -> Result<LossCurveFiles> {
    let dir = dir.as_ref();
    let finite = |points: &[(usize, f64)]| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|(_, loss)| loss.is_finite())
            .map(|&(step, loss)| (step as f64, loss))
            .collect()
    };
    let mut train = finite(&history.train);
    let mut val = finite(&history.val);
    train.sort_by(|a, b| a.0.total_cmp(&b.0));
    val.sort_by(|a, b| a.0.total_cmp(&b.0));
    if train.is_empty() && val.is_empty() {
        return Err(Error::Empty {
            arg: "history",
            what: "it has no finite train or validation loss to plot".into(),
        });
    }

    let csv = dir.join(LOSS_CSV);
    write_atomic(&csv, history.to_csv().as_bytes())?;
    let svg = dir.join(LOSS_SVG);
    let plot = plot_losses(&train, &val).map_err(|e| Error::Io {
        action: "plotting",
        path: svg.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&svg, plot.as_bytes())?;
    Ok(LossCurveFiles { csv, svg })
}

/// Colour of the training curve.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
/// Colour of the validation curve.
const VAL: RGBColor = RGBColor(255, 127, 14);

/// The SVG text of the plot.
fn plot_losses(train: &[(f64, f64)], val: &[(f64, f64)]) -> std::result::Result<String, String> {
    let all = || train.iter().chain(val);
    let (x_min, x_max) = widen(all().map(|p| p.0));
    let (y_min, y_max) = widen(all().map(|p| p.1));
    let margin = 0.05 * (y_max - y_min);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Loss", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x_min..x_max, (y_min - margin)..(y_max + margin))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        if !train.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    train.iter().copied(),
                    TRAIN.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label("train")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], TRAIN.stroke_width(2))
                });
        }
        if !val.is_empty() {
            draw_marked_line(&mut chart, val, VAL, "validation")?;
        }
        draw_legend(
            &mut chart,
            SeriesLabelPosition::UpperRight,
            ("sans-serif", 14),
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The range of `values`, widened to a non-empty interval when they are all equal.
fn widen(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi > lo {
        (lo, hi)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { 0.05 * lo.abs() };
        (lo - pad, hi + pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_merges_train_and_val_by_step_in_order() {
        let mut h = LossHistory::new();
        h.push_train(2, 1.5);
        h.push_train(1, 2.0);
        h.push_val(2, 1.75);
        h.push_val(5, 1.25);
        assert_eq!(
            h.to_csv(),
            "step,train_loss,val_loss\n1,2,\n2,1.5,1.75\n5,,1.25\n"
        );
    }

    #[test]
    fn csv_keeps_non_finite_losses() {
        let mut h = LossHistory::new();
        h.push_train(1, f64::NAN);
        assert_eq!(h.to_csv(), "step,train_loss,val_loss\n1,NaN,\n");
    }

    #[test]
    fn history_without_finite_loss_is_refused() {
        let mut h = LossHistory::new();
        h.push_val(1, f64::INFINITY);
        let dir = std::env::temp_dir().join(format!("unfold-viz-curves-{}", std::process::id()));
        let err = write_loss_curves(&dir, &h).unwrap_err();
        assert!(matches!(err, Error::Empty { arg: "history", .. }), "{err}");
        assert!(!dir.join(LOSS_CSV).exists());
    }

    #[test]
    fn widen_makes_a_single_value_a_range() {
        let (lo, hi) = widen([3.0].into_iter());
        assert!((lo - 2.85).abs() < 1e-12 && (hi - 3.15).abs() < 1e-12);
        assert_eq!(widen([0.0, 0.0].into_iter()), (-1.0, 1.0));
        assert_eq!(widen([1.0, 4.0].into_iter()), (1.0, 4.0));
    }

    #[test]
    fn plot_is_well_formed_svg_with_both_curves() {
        let mut h = LossHistory::new();
        for step in 1..=30 {
            h.push_train(step, 3.0 - 0.05 * step as f64);
        }
        h.push_val(15, 2.5);
        h.push_val(30, 2.0);
        h.push_train(31, f64::NAN); // left out of the plot, kept in the CSV
        let dir = std::env::temp_dir().join(format!("unfold-viz-plot-{}", std::process::id()));
        let files = write_loss_curves(&dir, &h).unwrap();
        let text = std::fs::read_to_string(&files.svg).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("the plot parses as XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let lines_in = |colour: RGBColor| -> Vec<roxmltree::Node> {
            let stroke = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
            doc.descendants()
                .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(&stroke))
                .collect()
        };
        // Each curve and its legend swatch; the train curve has all 30 finite points.
        assert_eq!(lines_in(TRAIN).len(), 2);
        assert_eq!(lines_in(VAL).len(), 2);
        let most_points = lines_in(TRAIN)
            .iter()
            .map(|p| {
                p.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .max();
        assert_eq!(most_points, Some(30));
        let csv = std::fs::read_to_string(&files.csv).unwrap();
        assert_eq!(csv.lines().count(), 1 + 31);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
