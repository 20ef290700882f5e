//! Scaling curves: time per training step against the tokens in the step, on log-log axes.
//!
//! Linear scaling (time ∝ batch × length) is a straight line of slope 1 on log-log axes, so
//! each measured curve is drawn next to a grey slope-1 line through its first point: where the
//! two part, a token has become dearer. `cargo bench --bench rnn -- scale` writes its
//! measurements this way.
//!
//! ```no_run
//! use unfold_viz::{write_scaling_plot, ScalingSeries};
//!
//! let length = ScalingSeries::new("T 64..4096, B 32", vec![(2048.0, 8.3), (8192.0, 30.1)]);
//! write_scaling_plot("scale.svg", "Time per training step", &[length])?;
//! # Ok::<(), unfold_nn::Error>(())
//! ```

use std::path::Path;

use plotters::prelude::*;
use unfold_nn::{Error, Result};

use crate::chart::{draw_legend, draw_marked_line};
use crate::write_atomic;

/// One measured curve: `(tokens per step, milliseconds per step)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSeries {
    /// Legend text, e.g. `"T 64..4096, B 32"`.
    pub label: String,
    /// `(tokens per step, ms per step)`, both positive (the axes are logarithmic).
    pub points: Vec<(f64, f64)>,
}

impl ScalingSeries {
    /// A curve named `label` through `points`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
        }
    }
}

/// Series colours, one per curve in order (matplotlib's first four).
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Colour of the slope-1 reference lines.
const REFERENCE: RGBColor = RGBColor(150, 150, 150);

/// Writes `series` as an SVG plot to `path`: ms per step against tokens per step, both axes
/// logarithmic, each curve with markers and a grey slope-1 line (time ∝ tokens) through its
/// point with the fewest tokens. The file is replaced atomically.
///
/// # Errors
///
/// [`Error::Empty`] if there is no series or a series has no point; [`Error::Config`]
/// naming the series if a point is not finite and positive, or if there are more series than
/// colours (4); [`Error::Io`] if the file cannot be written.
pub fn write_scaling_plot(
    path: impl AsRef<Path>,
    title: &str,
    series: &[ScalingSeries],
) -> Result<()> {
    let path = path.as_ref();
    check(series)?;
    let plot = plot(title, series).map_err(|e| Error::Io {
        action: "plotting",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(path, plot.as_bytes())
}

fn check(series: &[ScalingSeries]) -> Result<()> {
    if series.is_empty() {
        return Err(Error::Empty {
            arg: "series",
            what: "no curve to plot".into(),
        });
    }
    if series.len() > COLOURS.len() {
        return Err(Error::Config {
            field: "series",
            value: format!("{} curves", series.len()),
            reason: format!("the plot has colours for {}", COLOURS.len()),
        });
    }
    for s in series {
        if s.points.is_empty() {
            return Err(Error::Empty {
                arg: "series",
                what: format!("the curve `{}` has no point", s.label),
            });
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if let Some((x, y)) = s
            .points
            .iter()
            .find(|(x, y)| !positive(*x) || !positive(*y))
        {
            return Err(Error::Config {
                field: "series",
                value: format!("the curve `{}` with the point ({x}, {y})", s.label),
                reason: "on log axes every coordinate must be finite and positive".into(),
            });
        }
    }
    Ok(())
}

/// The slope-1 reference through the point of `points` with the fewest tokens, over `x_range`.
fn linear_reference(points: &[(f64, f64)], x_range: (f64, f64)) -> [(f64, f64); 2] {
    let &(x0, y0) = points
        .iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("checked: every series has a point");
    [x_range.0, x_range.1].map(|x| (x, y0 * x / x0))
}

/// The SVG text of the plot.
fn plot(title: &str, series: &[ScalingSeries]) -> std::result::Result<String, String> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let bounds = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
    };
    // A factor of 1.5 of room on each side of the data, in log space.
    let (x_lo, x_hi) = bounds(&mut all().map(|p| p.0));
    let (x_lo, x_hi) = (x_lo / 1.5, x_hi * 1.5);
    let (y_lo, y_hi) = bounds(&mut all().map(|p| p.1));
    let (y_lo, y_hi) = (y_lo / 1.5, y_hi * 1.5);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("tokens per step (batch × length)")
            .y_desc("ms per step")
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (s, colour)) in series.iter().zip(COLOURS).enumerate() {
            let mut points = s.points.clone();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let reference = chart
                .draw_series(LineSeries::new(
                    linear_reference(&points, (x_lo, x_hi)),
                    REFERENCE.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                reference
                    .label("linear: time ∝ tokens (through each curve's first point)")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], REFERENCE.stroke_width(1))
                    });
            }
            draw_marked_line(&mut chart, &points, colour, &s.label)?;
        }
        draw_legend(
            &mut chart,
            SeriesLabelPosition::UpperLeft,
            ("sans-serif", 14),
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("unfold-viz-{name}-{}.svg", std::process::id()))
    }

    #[test]
    fn reference_line_has_slope_one_through_the_smallest_point() {
        let line = linear_reference(&[(4096.0, 30.0), (2048.0, 8.0)], (1000.0, 10_000.0));
        assert_eq!(
            line,
            [
                (1000.0, 8.0 * 1000.0 / 2048.0),
                (10_000.0, 8.0 * 10_000.0 / 2048.0)
            ]
        );
    }

    #[test]
    fn bad_series_are_refused_by_name_before_writing() {
        let path = temp("scaling-bad");
        let err = write_scaling_plot(&path, "t", &[]).unwrap_err();
        assert!(matches!(err, Error::Empty { arg: "series", .. }), "{err}");
        let empty = ScalingSeries::new("empty one", vec![]);
        let err = write_scaling_plot(&path, "t", &[empty]).unwrap_err();
        assert!(err.to_string().contains("empty one"), "{err}");
        let zero = ScalingSeries::new("has zero", vec![(1.0, 2.0), (2.0, 0.0)]);
        let err = write_scaling_plot(&path, "t", &[zero]).unwrap_err();
        assert!(err.to_string().contains("has zero"), "{err}");
        let five = vec![ScalingSeries::new("s", vec![(1.0, 1.0)]); 5];
        assert!(write_scaling_plot(&path, "t", &five).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn plot_is_well_formed_svg_with_each_curve_and_its_reference() {
        let path = temp("scaling");
        let length = ScalingSeries::new(
            "length",
            vec![
                (2048.0, 8.3),
                (8192.0, 30.1),
                (32768.0, 128.2),
                (131072.0, 937.5),
            ],
        );
        let batch = ScalingSeries::new("batch", vec![(512.0, 2.7), (1024.0, 4.4), (4096.0, 16.4)]);
        write_scaling_plot(&path, "Time per step", &[length, batch]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("the plot parses as XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let point_counts = |colour: RGBColor| -> Vec<usize> {
            let stroke = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
            let mut counts: Vec<usize> = doc
                .descendants()
                .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(&stroke))
                .map(|n| {
                    n.attribute("points")
                        .unwrap_or("")
                        .split_whitespace()
                        .count()
                })
                .collect();
            counts.sort();
            counts
        };
        // Per curve: its legend swatch (2 points) and the curve; in grey, each curve's slope-1
        // reference (2 points) and one legend swatch.
        assert_eq!(point_counts(COLOURS[0]), vec![2, 4]);
        assert_eq!(point_counts(COLOURS[1]), vec![2, 3]);
        assert_eq!(point_counts(REFERENCE), vec![2, 2, 2]);
        assert!(text.contains("length") && text.contains("batch"));
        let _ = std::fs::remove_file(&path);
    }
}
