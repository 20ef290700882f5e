//! Draws every topology: the circuit (with the one-step delay) and the graph unfolded over τ
//! steps, as Graphviz DOT and, when Graphviz's `dot` is installed, SVG.
//!
//! ```text
//! cargo run --release -p unfold-lab --bin diagrams                          # into docs/diagrams/
//! cargo run --release -p unfold-lab --bin diagrams -- --out figs --tau 4
//! cargo run --release -p unfold-lab --bin diagrams -- --char-lm runs/char_lm --out runs/char_lm
//! ```
//!
//! (`--features wgpu` to run on the GPU; paths are relative to the directory cargo is run from.)
//!
//! With `--char-lm DIR` (the `--out` of a `char_lm` run) it also loads that trained model and
//! draws its hidden states over a stretch of the validation text: `hidden_heatmap.svg` (units ×
//! characters) and `hidden_pca.svg` (states projected on two principal components, coloured by
//! the next character); and the run's loss history (`metrics.json`) as `loss.csv`/`loss.svg`.
//!
//! Ends with one JSON line listing the files written.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Serialize;

use unfold_data::{Corpus, Vocab};
use unfold_lab::backend::{self, Backend};
use unfold_lab::{exit_on_error, Result};
use unfold_nn::checkpoint::{load_model, read_json, RunDir, MODEL_FILE};
use unfold_nn::{ElmanCellConfig, ElmanRnn, ElmanRnnConfig, Error};
use unfold_viz::{
    write_loss_curves, CellNames, DiagramWriter, Feedback, HiddenStates, LossHistory, Svg, Topology,
};

/// Draw the circuit and unfolded graph of every topology (and a trained char-LM's states).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "docs/diagrams")]
    out: PathBuf,
    /// Steps of the unfolded graphs.
    #[arg(long, default_value_t = 3)]
    tau: usize,
    /// A `char_lm` output directory: also draw that model's hidden states and loss history.
    #[arg(long, value_name = "DIR")]
    char_lm: Option<PathBuf>,
    /// Characters of validation text the hidden states are computed over (PCA plot).
    #[arg(long, default_value_t = 2000)]
    text_len: usize,
    /// Characters shown in the heatmap (taken after a warm-up of 200 characters).
    #[arg(long, default_value_t = 72)]
    heatmap_len: usize,
}

/// The last line of output.
#[derive(Debug, Serialize)]
struct Written {
    dot: Vec<PathBuf>,
    svg: Vec<PathBuf>,
    graphviz: bool,
    other: Vec<PathBuf>,
}

/// Characters the model reads before the heatmap's window starts, so that the window shows
/// states in use rather than the transient from the zero initial state.
const WARM_UP: usize = 200;

fn main() {
    let args = Args::parse();
    exit_on_error(|| run(&args));
}

fn run(args: &Args) -> Result<()> {
    let out = RunDir::create(&args.out)?;
    let writer = DiagramWriter::new(out.path());
    // The custom cell: any `Recurrence`, drawn with the names its user gives it. An Elman cell
    // stands in for it here; the drawing reads its widths through the trait.
    let device = backend::open()?;
    let cell = ElmanCellConfig::new(8, 16).init::<Backend>(&device);
    let topologies = [
        Topology::HiddenToHidden,
        Topology::OutputToHidden(Feedback::TeacherForcing),
        Topology::OutputToHidden(Feedback::FreeRunning),
        Topology::SequenceToOne,
        Topology::recurrence(&cell, CellNames::new("x", "s", "f")),
    ];
    let mut written = Written {
        dot: Vec::new(),
        svg: Vec::new(),
        graphviz: true,
        other: Vec::new(),
    };
    for topology in &topologies {
        for files in writer.write_topology(topology, args.tau)? {
            eprintln!("wrote {}", files.dot.display());
            written.dot.push(files.dot);
            match files.svg {
                Svg::Written(path) => {
                    eprintln!("wrote {}", path.display());
                    written.svg.push(path);
                }
                missing @ Svg::NoGraphviz { .. } => {
                    if written.graphviz {
                        eprintln!("note: {missing}");
                    }
                    written.graphviz = false;
                }
            }
        }
    }
    if let Some(dir) = &args.char_lm {
        written.other = char_lm_views(dir, out.path(), args)?;
        for path in &written.other {
            eprintln!("wrote {}", path.display());
        }
    }
    println!(
        "{}",
        serde_json::to_string(&written).expect("paths serialise to JSON")
    );
    Ok(())
}

/// Loads a `char_lm` run and draws its hidden states and loss history into `out`.
fn char_lm_views(dir: &Path, out: &Path, args: &Args) -> Result<Vec<PathBuf>> {
    let config_path = dir.join("config.json");
    let run_json: serde_json::Value = read_json(&config_path)?;
    let config: ElmanRnnConfig =
        serde_json::from_value(run_json["model"].clone()).map_err(|e| Error::BadFile {
            path: config_path.clone(),
            problem: format!("not a char_lm run's config: field `model`: {e}"),
        })?;
    let vocab: Vocab = read_json(&dir.join("vocab.json"))?;
    let device = backend::try_device()?;
    let blank: ElmanRnn<Backend> = config.try_init(&device)?;
    let model = load_model(&dir.join(MODEL_FILE), &blank, &device)?;

    // The text: the start of the validation split of the corpus the model was trained on.
    let corpus = match run_json["args"]["common"]["corpus"].as_str() {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::tiny_shakespeare(),
    };
    let (_, val_ids) = corpus.split(0.9)?;
    let len = args.text_len.min(val_ids.len());
    let text = vocab.decode(&val_ids[..len])?;
    let hidden = HiddenStates::from_elman(&model, &vocab, &text)?;

    let mut files = Vec::new();
    let start = WARM_UP.min(len.saturating_sub(args.heatmap_len));
    let window = hidden.window(start..(start + args.heatmap_len).min(len))?;
    let heatmap = out.join("hidden_heatmap.svg");
    window.write_heatmap(&heatmap)?;
    files.push(heatmap);
    let pca_path = out.join("hidden_pca.svg");
    let pca = hidden.write_pca(&pca_path)?;
    eprintln!(
        "PCA of {} states: PC1 explains {:.1}%, PC2 {:.1}% of the variance",
        hidden.states.len() - 1,
        100.0 * pca.explained()[0],
        100.0 * pca.explained()[1]
    );
    files.push(pca_path);

    // metrics.json's history: train and validation loss at every evaluation.
    let metrics_path = dir.join("metrics.json");
    if metrics_path.exists() {
        let metrics: serde_json::Value = read_json(&metrics_path)?;
        let mut history = LossHistory::new();
        for eval in metrics["history"].as_array().into_iter().flatten() {
            let step = eval["step"].as_u64().unwrap_or(0) as usize;
            if let Some(loss) = eval["train_loss"].as_f64() {
                history.push_train(step, loss);
            }
            if let Some(loss) = eval["val_loss"].as_f64() {
                history.push_val(step, loss);
            }
        }
        if !history.is_empty() {
            let curves = write_loss_curves(out, &history)?;
            files.extend([curves.csv, curves.svg]);
        }
    }
    Ok(files)
}
