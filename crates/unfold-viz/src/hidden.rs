//! What a character language model's hidden units do: a heatmap of the units over a stretch of
//! text, and the states projected onto their first two principal components, coloured by the
//! character that comes next.
//!
//! The plots take plain `Vec<Vec<f32>>` states (one per character) and the characters, so any
//! model's states can be drawn; [`HiddenStates::from_elman`] gets them from an
//! [`ElmanRnn`].

use std::collections::HashMap;
use std::path::Path;

use burn::config::Config;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use plotters::prelude::*;
use unfold_data::Vocab;
use unfold_nn::{ElmanRnn, Error, Result, SequenceModel, UnrollOptions};

use crate::chart::draw_legend;
use crate::pca::{check_points, Pca};
use crate::write_atomic;

/// Hidden states over a text: `states[t]` is `h(t)`, the state after reading `chars[t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenStates {
    /// The characters read, one per step.
    pub chars: Vec<char>,
    /// The state after each character, each of the same width.
    pub states: Vec<Vec<f32>>,
}

impl HiddenStates {
    /// Pairs states with the characters they were computed from.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] on no states; [`Error::Shape`] if the counts or widths differ;
    /// [`Error::NonFinite`] on a NaN or infinite value.
    pub fn new(chars: Vec<char>, states: Vec<Vec<f32>>) -> Result<Self> {
        check_states(&states, &chars, "chars")?;
        Ok(Self { chars, states })
    }

    /// Runs `model` over `text` from a zero state and keeps every hidden state
    /// ([`RnnOutput::states`](unfold_nn::RnnOutput::states)).
    ///
    /// It reads text, so it returns unfold-data's error: the vocabulary's own.
    ///
    /// # Errors
    ///
    /// [`unfold_data::Error::UnknownChar`] if `text` has a character outside `vocab` (from
    /// [`Vocab::encode`]); in [`unfold_data::Error::Nn`]: [`Error::Empty`] if `text` is empty,
    /// and whatever [`ElmanRnn::try_forward`](SequenceModel::try_forward) reports.
    pub fn from_elman<B: Backend>(
        model: &ElmanRnn<B>,
        vocab: &Vocab,
        text: &str,
    ) -> unfold_data::Result<Self> {
        let ids = vocab.encode(text)?;
        if ids.is_empty() {
            return Err(Error::Empty {
                arg: "text",
                what: "there is no character to run the model over".into(),
            }
            .into());
        }
        let device = model.cell().w.device();
        let len = ids.len();
        let ids: Vec<i64> = ids.into_iter().map(|id| id as i64).collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
        let output = model.try_forward(tokens, &UnrollOptions::new())?;
        let [_, time, hidden] = output.states.dims();
        let values: Vec<f32> = output.states.into_data().iter::<f32>().collect();
        let states = values
            .chunks(hidden)
            .take(time)
            .map(<[f32]>::to_vec)
            .collect();
        Ok(Self::new(text.chars().collect(), states)?)
    }

    /// The characters and states at `range`: a stretch to draw as a heatmap, taken after a
    /// warm-up so that it shows states in use rather than the transient from `h(0) = 0`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `range` is empty or reaches past the last state.
    pub fn window(&self, range: std::ops::Range<usize>) -> Result<Self> {
        if range.start >= range.end || range.end > self.states.len() {
            return Err(Error::config(
                "range",
                format!("{range:?}"),
                format!(
                    "must be a non-empty range inside 0..{} (the states)",
                    self.states.len()
                ),
            ));
        }
        Ok(Self {
            chars: self.chars[range.clone()].to_vec(),
            states: self.states[range].to_vec(),
        })
    }

    /// Writes the heatmap of [`HeatmapConfig::new`] to `path`.
    pub fn write_heatmap(&self, path: impl AsRef<Path>) -> Result<()> {
        HeatmapConfig::new().write(path, &self.states, &self.chars)
    }

    /// Writes the PCA plot of [`PcaPlotConfig::new`] to `path`: each state but the last,
    /// coloured by the character read next.
    pub fn write_pca(&self, path: impl AsRef<Path>) -> Result<Pca> {
        let n = self.states.len();
        if n < 2 {
            return Err(Error::Empty {
                arg: "states",
                what: "one state has no next character".into(),
            });
        }
        PcaPlotConfig::new().write(path, &self.states[..n - 1], &self.chars[1..])
    }
}

/// Configuration of the hidden-unit heatmap ([`HeatmapConfig::write`]).
#[derive(Config, Debug)]
pub struct HeatmapConfig {
    /// Units drawn at most: with more, the units whose activation varies most over the text
    /// are drawn, in unit order. Default 48.
    #[config(default = 48)]
    pub max_units: usize,
    /// Width of one character's column, in pixels. Default 14.
    #[config(default = 14)]
    pub cell_width: u32,
    /// Height of one unit's row, in pixels. Default 9.
    #[config(default = 9)]
    pub cell_height: u32,
}

impl HeatmapConfig {
    /// Writes the heatmap of `states` (one per character of `chars`) to `path` as SVG: a row
    /// per hidden unit, a column per character (labelled with it; a space shows as `␣`, a
    /// newline as `↵`), each cell coloured from blue (−1) through white (0) to red (+1), the
    /// range of `tanh` (values beyond it take the end colours).
    ///
    /// # Errors
    ///
    /// As [`HiddenStates::new`]; [`Error::Config`] if `max_units` or a cell size is 0;
    /// [`Error::Io`] if the file cannot be written.
    pub fn write(&self, path: impl AsRef<Path>, states: &[Vec<f32>], chars: &[char]) -> Result<()> {
        let path = path.as_ref();
        let width = check_states(states, chars, "chars")?;
        for (field, value) in [
            ("max_units", self.max_units),
            ("cell_width", self.cell_width as usize),
            ("cell_height", self.cell_height as usize),
        ] {
            if value == 0 {
                return Err(Error::config(field, value, "must be at least 1"));
            }
        }
        let units = most_varying_units(states, width, self.max_units);
        let svg = self
            .plot(states, chars, &units)
            .map_err(|e| plot_error(path, e))?;
        write_atomic(path, svg.as_bytes())
    }

    fn plot(
        &self,
        states: &[Vec<f32>],
        chars: &[char],
        units: &[usize],
    ) -> std::result::Result<String, String> {
        let (left, top, bottom, right) = (64u32, 44u32, 40u32, 16u32);
        let size = (
            left + right + self.cell_width * chars.len() as u32,
            top + bottom + self.cell_height * units.len() as u32,
        );
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let title = format!(
                "Hidden units over the text ({} of {} units, blue −1 … red +1)",
                units.len(),
                states[0].len()
            );
            root.draw(&Text::new(title, (left as i32, 12), ("sans-serif", 15)))
                .map_err(|e| e.to_string())?;
            let cell = |t: usize, row: usize| {
                let x = (left + t as u32 * self.cell_width) as i32;
                let y = (top + row as u32 * self.cell_height) as i32;
                (x, y)
            };
            for (row, &unit) in units.iter().enumerate() {
                for (t, state) in states.iter().enumerate() {
                    let (x, y) = cell(t, row);
                    let corner = (x + self.cell_width as i32, y + self.cell_height as i32);
                    root.draw(&Rectangle::new(
                        [(x, y), corner],
                        diverging(state[unit]).filled(),
                    ))
                    .map_err(|e| e.to_string())?;
                }
                // Label every unit when rows are tall enough, else every fifth.
                if self.cell_height >= 10 || row % 5 == 0 {
                    let (_, y) = cell(0, row);
                    root.draw(&Text::new(
                        format!("h{unit}"),
                        (8, y + self.cell_height as i32 - 1),
                        ("sans-serif", 9.min(self.cell_height + 1)),
                    ))
                    .map_err(|e| e.to_string())?;
                }
            }
            let y_chars = (top + self.cell_height * units.len() as u32 + 16) as i32;
            let y_above = (top - 6) as i32;
            for (t, &c) in chars.iter().enumerate() {
                let (x, _) = cell(t, 0);
                let x = x + self.cell_width as i32 / 2 - 4;
                for y in [y_above, y_chars] {
                    root.draw(&Text::new(show_char(c), (x, y), ("monospace", 13)))
                        .map_err(|e| e.to_string())?;
                }
            }
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }
}

/// Configuration of the PCA plot of hidden states ([`PcaPlotConfig::write`]).
#[derive(Config, Debug)]
pub struct PcaPlotConfig {
    /// Next characters given a colour of their own: the most frequent ones; the rest are drawn
    /// in grey as "other". Default 8.
    #[config(default = 8)]
    pub max_classes: usize,
    /// Radius of a point, in pixels. Default 3.
    #[config(default = 3)]
    pub point_size: u32,
}

impl PcaPlotConfig {
    /// Projects `states` onto their first two principal components and writes the scatter
    /// plot to `path` as SVG, each point coloured by `next_chars` (the character that follows
    /// the state; a space shows as `␣`, a newline as `↵`). Returns the fitted [`Pca`]; the axis
    /// titles give the share of variance each component explains.
    ///
    /// # Errors
    ///
    /// As [`Pca::fit`]; [`Error::Shape`] if `next_chars` is not one per state; [`Error::Io`]
    /// if the file cannot be written.
    pub fn write(
        &self,
        path: impl AsRef<Path>,
        states: &[Vec<f32>],
        next_chars: &[char],
    ) -> Result<Pca> {
        let path = path.as_ref();
        check_points("states", states)?;
        check_states(states, next_chars, "next_chars")?;
        let pca = Pca::fit(states)?;
        let points: Vec<[f64; 2]> = states.iter().map(|s| pca.project(s)).collect();
        let svg = self
            .plot(&pca, &points, next_chars)
            .map_err(|e| plot_error(path, e))?;
        write_atomic(path, svg.as_bytes())?;
        Ok(pca)
    }

    fn plot(
        &self,
        pca: &Pca,
        points: &[[f64; 2]],
        next_chars: &[char],
    ) -> std::result::Result<String, String> {
        // The most frequent next characters, ties broken by character order.
        let mut counts: HashMap<char, usize> = HashMap::new();
        for &c in next_chars {
            *counts.entry(c).or_default() += 1;
        }
        let mut ranked: Vec<(char, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let classes: Vec<char> = ranked
            .iter()
            .take(self.max_classes)
            .map(|&(c, _)| c)
            .collect();
        let colour = |c: char| {
            classes
                .iter()
                .position(|&k| k == c)
                .map(|i| Palette99::pick(i).to_rgba())
                .unwrap_or(RGBAColor(150, 150, 150, 0.5))
        };

        let (x_min, x_max) = range(points.iter().map(|p| p[0]));
        let (y_min, y_max) = range(points.iter().map(|p| p[1]));
        let [e1, e2] = pca.explained();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 600)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    "Hidden states, PCA, coloured by the next character",
                    ("sans-serif", 18),
                )
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(x_min..x_max, y_min..y_max)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(format!("PC1 ({:.0}% of variance)", 100.0 * e1))
                .y_desc(format!("PC2 ({:.0}% of variance)", 100.0 * e2))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.08))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 15))
                .draw()
                .map_err(|e| e.to_string())?;
            // "Other" first, so the named classes are drawn on top of it.
            let other: Vec<(f64, f64)> = points
                .iter()
                .zip(next_chars)
                .filter(|(_, c)| !classes.contains(c))
                .map(|(p, _)| (p[0], p[1]))
                .collect();
            let radius = self.point_size as i32;
            if !other.is_empty() {
                let grey = colour('\u{0}');
                chart
                    .draw_series(other.iter().map(|&p| Circle::new(p, radius, grey.filled())))
                    .map_err(|e| e.to_string())?
                    .label("other")
                    .legend(move |(x, y)| Circle::new((x + 6, y), 4, grey.filled()));
            }
            for &class in &classes {
                let fill = colour(class).mix(0.75);
                let mine = points
                    .iter()
                    .zip(next_chars)
                    .filter(|&(_, &c)| c == class)
                    .map(|(p, _)| Circle::new((p[0], p[1]), radius, fill.filled()));
                chart
                    .draw_series(mine)
                    .map_err(|e| e.to_string())?
                    .label(format!("next {}", show_char(class)))
                    .legend(move |(x, y)| Circle::new((x + 6, y), 4, fill.filled()));
            }
            draw_legend(
                &mut chart,
                SeriesLabelPosition::UpperRight,
                ("monospace", 13),
            )?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }
}

/// [`HeatmapConfig::write`] with the default configuration.
pub fn write_hidden_heatmap(
    path: impl AsRef<Path>,
    states: &[Vec<f32>],
    chars: &[char],
) -> Result<()> {
    HeatmapConfig::new().write(path, states, chars)
}

/// [`PcaPlotConfig::write`] with the default configuration.
pub fn write_hidden_pca(
    path: impl AsRef<Path>,
    states: &[Vec<f32>],
    next_chars: &[char],
) -> Result<Pca> {
    PcaPlotConfig::new().write(path, states, next_chars)
}

/// Checks: at least one state, all of one non-zero width and finite, one label per state.
/// Returns the width.
fn check_states(states: &[Vec<f32>], labels: &[char], labels_arg: &'static str) -> Result<usize> {
    if states.is_empty() {
        return Err(Error::Empty {
            arg: "states",
            what: "no hidden state given".into(),
        });
    }
    let width = states[0].len();
    if width == 0 {
        return Err(Error::Empty {
            arg: "states",
            what: "the states have no units".into(),
        });
    }
    if let Some(bad) = states.iter().find(|s| s.len() != width) {
        return Err(Error::shape(
            "states",
            format!(
                "[{}, {width}] (every state as wide as the first)",
                states.len()
            ),
            &[bad.len()],
        ));
    }
    if states.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { arg: "states" });
    }
    if labels.len() != states.len() {
        return Err(Error::shape(
            labels_arg,
            format!("[{}] (one character per state)", states.len()),
            &[labels.len()],
        ));
    }
    Ok(width)
}

/// The `max` units with the largest variance over the states, in unit order (all of them when
/// there are no more than `max`).
fn most_varying_units(states: &[Vec<f32>], width: usize, max: usize) -> Vec<usize> {
    if width <= max {
        return (0..width).collect();
    }
    let n = states.len() as f64;
    let variance = |u: usize| {
        let mean = states.iter().map(|s| s[u] as f64).sum::<f64>() / n;
        states
            .iter()
            .map(|s| (s[u] as f64 - mean).powi(2))
            .sum::<f64>()
            / n
    };
    let mut ranked: Vec<(usize, f64)> = (0..width).map(|u| (u, variance(u))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<usize> = ranked.into_iter().take(max).map(|(u, _)| u).collect();
    chosen.sort_unstable();
    chosen
}

/// Blue (−1) → white (0) → red (+1), clamped.
fn diverging(v: f32) -> RGBColor {
    let v = v.clamp(-1.0, 1.0) as f64;
    let (r, g, b) = if v >= 0.0 {
        (255.0, 255.0 - 200.0 * v, 255.0 - 215.0 * v)
    } else {
        (255.0 + 215.0 * v, 255.0 + 155.0 * v, 255.0)
    };
    RGBColor(r.round() as u8, g.round() as u8, b.round() as u8)
}

/// A character as a visible label: space `␣`, newline `↵`, tab `⇥`, other controls `·`.
fn show_char(c: char) -> String {
    match c {
        ' ' => "␣".into(),
        '\n' => "↵".into(),
        '\t' => "⇥".into(),
        c if c.is_control() => "·".into(),
        c => c.to_string(),
    }
}

/// The range of `values` with 5% padding, never empty.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
    (lo - pad, hi + pad)
}

fn plot_error(path: &Path, message: String) -> Error {
    Error::Io {
        action: "plotting",
        path: path.to_path_buf(),
        source: std::io::Error::other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Initializer;
    use unfold_nn::ElmanRnnConfig;

    type TestBackend = burn::backend::NdArray<f64>;

    #[test]
    fn states_from_elman_equal_the_forward_states() {
        let device = Default::default();
        let vocab = Vocab::from_text("abc ").unwrap();
        let model: ElmanRnn<TestBackend> = ElmanRnnConfig::new(4, 5, 4)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.8,
            })
            .init(&device);
        let text = "ab ca";
        let hidden = HiddenStates::from_elman(&model, &vocab, text).unwrap();
        assert_eq!(hidden.chars, text.chars().collect::<Vec<_>>());
        assert_eq!(hidden.states.len(), 5);
        // Reference: one step at a time with the cell's own step function.
        use unfold_nn::Recurrence;
        let mut h = Tensor::<TestBackend, 2>::zeros([1, 5], &device);
        for (t, id) in vocab.encode(text).unwrap().into_iter().enumerate() {
            let ids = Tensor::<TestBackend, 2, Int>::from_data(
                TensorData::new(vec![id as i64], [1, 1]),
                &device,
            );
            let drive = model.cell().drive(ids.into()).reshape([1, 5]);
            h = model.cell().step(h, drive);
            let expected: Vec<f64> = h.clone().into_data().iter::<f64>().collect();
            for (got, want) in hidden.states[t].iter().zip(&expected) {
                assert!(
                    (*got as f64 - want).abs() < 1e-6,
                    "step {t}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn unknown_character_is_named() {
        let device = Default::default();
        let vocab = Vocab::from_text("ab").unwrap();
        let model: ElmanRnn<TestBackend> = ElmanRnnConfig::new(2, 3, 2).init(&device);
        let err = HiddenStates::from_elman(&model, &vocab, "abz").unwrap_err();
        assert!(
            matches!(
                err,
                unfold_data::Error::UnknownChar {
                    ch: 'z',
                    position: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn mismatched_characters_and_states_are_refused() {
        let err = HiddenStates::new(vec!['a'], vec![vec![0.0], vec![1.0]]).unwrap_err();
        assert!(matches!(err, Error::Shape { arg: "chars", .. }), "{err}");
        let err = HiddenStates::new(vec!['a', 'b'], vec![vec![0.0], vec![1.0, 2.0]]).unwrap_err();
        assert!(matches!(err, Error::Shape { arg: "states", .. }), "{err}");
    }

    #[test]
    fn window_takes_matching_characters_and_states() {
        let hidden = HiddenStates::new(
            "abcd".chars().collect(),
            (0..4).map(|t| vec![t as f32]).collect(),
        )
        .unwrap();
        let window = hidden.window(1..3).unwrap();
        assert_eq!(window.chars, ['b', 'c']);
        assert_eq!(window.states, [vec![1.0], vec![2.0]]);
        let err = hidden.window(2..5).unwrap_err();
        assert!(matches!(err, Error::Config { field: "range", .. }), "{err}");
        assert!(hidden.window(2..2).is_err());
    }

    #[test]
    fn most_varying_units_keeps_the_largest_variances_in_order() {
        // Unit u varies with amplitude [0.1, 3.0, 0.0, 2.0, 1.0][u].
        let amp = [0.1f32, 3.0, 0.0, 2.0, 1.0];
        let states: Vec<Vec<f32>> = (0..6)
            .map(|t| {
                amp.iter()
                    .map(|a| if t % 2 == 0 { *a } else { -*a })
                    .collect()
            })
            .collect();
        assert_eq!(most_varying_units(&states, 5, 3), [1, 3, 4]);
        assert_eq!(most_varying_units(&states, 5, 9), [0, 1, 2, 3, 4]);
    }

    fn parse_count(path: &Path, tag: &str) -> usize {
        let text = std::fs::read_to_string(path).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("the plot parses as XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants().filter(|n| n.has_tag_name(tag)).count()
    }

    #[test]
    fn heatmap_and_pca_are_well_formed_svg() {
        // Three units over six characters: unit 0 follows the character class, unit 1 the
        // position, unit 2 is constant.
        let chars: Vec<char> = "a <b>\n".chars().collect();
        let states: Vec<Vec<f32>> = chars
            .iter()
            .enumerate()
            .map(|(t, c)| {
                vec![
                    if c.is_alphabetic() { 0.9 } else { -0.9 },
                    t as f32 / 6.0,
                    0.1,
                ]
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("unfold-viz-hidden-{}", std::process::id()));
        let heatmap = dir.join("heatmap.svg");
        write_hidden_heatmap(&heatmap, &states, &chars).unwrap();
        // The background and one cell per unit and character.
        assert_eq!(parse_count(&heatmap, "rect"), 1 + 3 * 6);
        let pca = dir.join("pca.svg");
        write_hidden_pca(&pca, &states[..5], &chars[1..]).unwrap();
        // Five points and a legend swatch for each of the five distinct next characters.
        assert_eq!(parse_count(&pca, "circle"), 5 + 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn diverging_colours_hit_the_ends_and_white() {
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(1.0), RGBColor(255, 55, 40));
        assert_eq!(diverging(-1.0), RGBColor(40, 100, 255));
        assert_eq!(diverging(7.0), diverging(1.0));
    }
}
