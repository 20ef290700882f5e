//! Training curves and hidden-state views, written through `unfold_viz` to a scratch directory
//! and read back: the CSV rows, and SVG files that are whole documents with the expected marks
//! (a line per loss curve, a cell per unit and character, a point per state).

use std::path::PathBuf;

use burn::module::Initializer;
use unfold_data::Corpus;
use unfold_nn::{ElmanRnn, ElmanRnnConfig, Error};
use unfold_viz::{
    write_hidden_heatmap, write_hidden_pca, write_loss_curves, HeatmapConfig, HiddenStates,
    LossHistory,
};

type B = burn::backend::NdArray<f64>;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unfold-viz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The text of an SVG document, after checking it is one: opens with `<svg` (plotters writes
/// no XML declaration), closes with `</svg>`.
fn read_svg(path: &std::path::Path) -> String {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    svg
}

fn count(svg: &str, element: &str) -> usize {
    svg.matches(&format!("<{element} ")).count()
}

/// How many `<text>` elements read exactly `content` (surrounding whitespace ignored).
fn texts(svg: &str, content: &str) -> usize {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t[t.find('>')? + 1..t.find("</text>")?].trim()))
        .filter(|t| *t == content)
        .count()
}

#[test]
fn loss_curves_write_one_csv_row_per_step_and_a_line_per_split() {
    let dir = scratch("curves");
    let mut history = LossHistory::new();
    for step in 1..=40 {
        history.push_train(step, 4.0 / (step as f64).sqrt());
        if step % 10 == 0 {
            history.push_val(step, 4.2 / (step as f64).sqrt());
        }
    }
    let files = write_loss_curves(&dir, &history).unwrap();
    assert_eq!(files.csv, dir.join("loss.csv"));

    let csv = std::fs::read_to_string(&files.csv).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["step", "train_loss", "val_loss"]);
    assert_eq!(rows.len(), 41);
    for (i, row) in rows[1..].iter().enumerate() {
        let step = i + 1;
        assert_eq!(row[0].parse::<usize>().unwrap(), step);
        let train: f64 = row[1].parse().unwrap();
        assert!((train - 4.0 / (step as f64).sqrt()).abs() < 1e-12);
        assert_eq!(row[2].is_empty(), step % 10 != 0, "row {row:?}");
    }

    let svg = read_svg(&files.svg);
    // One line through the 40 train points, one through the 4 validation points (the other
    // polylines are axes, ticks and legend swatches of 2 points), one marker per val point.
    let sizes: Vec<usize> = svg
        .split("<polyline ")
        .skip(1)
        .map(|p| {
            let points = p.split("points=\"").nth(1).unwrap();
            points[..points.find('"').unwrap()]
                .split_whitespace()
                .count()
        })
        .collect();
    assert_eq!(sizes.iter().filter(|&&n| n == 40).count(), 1, "{sizes:?}");
    assert_eq!(sizes.iter().filter(|&&n| n == 4).count(), 1, "{sizes:?}");
    assert!(
        sizes.iter().all(|&n| n == 40 || n == 4 || n == 2),
        "{sizes:?}"
    );
    assert_eq!(count(&svg, "circle"), 4);
    assert_eq!((texts(&svg, "train"), texts(&svg, "validation")), (1, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

fn small_model() -> (ElmanRnn<B>, Corpus) {
    let corpus =
        Corpus::from_text("toy", "the cat sat on the mat.\nthe dog sat on the log.\n").unwrap();
    let vocab = corpus.vocab().len();
    let model = ElmanRnnConfig::new(vocab, 12, vocab)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.6,
        })
        .init(&Default::default());
    (model, corpus)
}

#[test]
fn hidden_heatmap_has_a_cell_per_unit_and_character() {
    let dir = scratch("heatmap");
    let (model, corpus) = small_model();
    let hidden = HiddenStates::from_elman(&model, corpus.vocab(), corpus.text()).unwrap();
    let chars = corpus.text().chars().count();
    assert_eq!(hidden.states.len(), chars);
    assert!(hidden.states.iter().all(|s| s.len() == 12));

    let all = dir.join("all.svg");
    write_hidden_heatmap(&all, &hidden.states, &hidden.chars).unwrap();
    let svg = read_svg(&all);
    // One rectangle for the background, then one per cell.
    assert_eq!(count(&svg, "rect"), 1 + 12 * chars, "cells");
    // Each character labels its column twice (above and below), spaces and newlines visibly.
    assert_eq!(texts(&svg, "␣"), 2 * corpus.text().matches(' ').count());
    assert_eq!(texts(&svg, "↵"), 2 * 2);

    let few = dir.join("few.svg");
    HeatmapConfig::new()
        .with_max_units(5)
        .write(&few, &hidden.states, &hidden.chars)
        .unwrap();
    assert_eq!(count(&read_svg(&few), "rect"), 1 + 5 * chars);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hidden_pca_draws_a_point_per_state_coloured_by_next_character() {
    let dir = scratch("pca");
    let (model, corpus) = small_model();
    let hidden = HiddenStates::from_elman(&model, corpus.vocab(), corpus.text()).unwrap();
    let path = dir.join("pca.svg");
    let pca = hidden.write_pca(&path).unwrap();
    let svg = read_svg(&path);
    let points = hidden.states.len() - 1;
    let classes = 8 + 1; // the 8 most frequent next characters, and "other"
    assert_eq!(
        count(&svg, "circle"),
        points + classes,
        "a point per state, a legend swatch per class"
    );
    assert_eq!(
        texts(&svg, "next ␣"),
        1,
        "space is the most frequent next character"
    );
    assert_eq!(texts(&svg, "other"), 1);
    let [e1, e2] = pca.explained();
    assert!(e1 >= e2 && e2 > 0.0 && e1 + e2 <= 1.0 + 1e-9, "{e1} {e2}");

    // The free function takes the pairs directly, and checks them.
    let err = write_hidden_pca(&path, &hidden.states, &hidden.chars[1..]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shape {
                arg: "next_chars",
                ..
            }
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
