//! The graphs of unfold's topologies: each one folded (a circuit, with the one-step delay on
//! its recurrent edge) and unfolded for τ steps (Goodfellow et al., *Deep Learning*, §10.1–10.2).

use burn::tensor::backend::Backend;
use unfold_nn::{Error, Recurrence, Result};

use crate::graph::{Graph, Node, NodeKind};

/// What an output-to-hidden network feeds back into the next state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Training with teacher forcing: the target `y(t-1)` drives `h(t)`, so the steps are
    /// decoupled (fig. 10.6, left).
    TeacherForcing,
    /// Deployment: the model's own output `o(t-1)` drives `h(t)` (fig. 10.6, right); no
    /// targets, no loss.
    FreeRunning,
}

/// The names a custom cell is drawn with: `x(t) → h(t)` and `h(t-1) → h(t)`, both via `f`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellNames {
    /// Symbol of the input, `x`.
    pub input: String,
    /// Symbol of the state, `h`.
    pub state: String,
    /// Name of the transition, `f`.
    pub transition: String,
}

impl CellNames {
    /// Names for `state(t) = transition(state(t-1), input(t))`.
    pub fn new(
        input: impl Into<String>,
        state: impl Into<String>,
        transition: impl Into<String>,
    ) -> Self {
        Self {
            input: input.into(),
            state: state.into(),
            transition: transition.into(),
        }
    }
}

impl Default for CellNames {
    /// `h(t) = f(h(t-1), x(t))`, the textbook's eq. 10.5.
    fn default() -> Self {
        Self::new("x", "h", "f")
    }
}

/// A recurrent topology, described for drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// Hidden-to-hidden (Elman), fig. 10.3: `h(t) = tanh(b + W h(t-1) + U x(t))`,
    /// `o(t) = c + V h(t)`, a loss `L(t)` against `y(t)` at every step.
    HiddenToHidden,
    /// Output-to-hidden (Jordan), fig. 10.4 and 10.6: `h(t) = tanh(b + W ŷ(t-1) + U x(t))`,
    /// where `ŷ(t-1)` is the target `y(t-1)` in training and the output `o(t-1)` at deployment.
    OutputToHidden(Feedback),
    /// Single output at the end, fig. 10.5: hidden-to-hidden recurrence, and only `h(τ)` is
    /// read out, `o(τ) = c + V h(τ)`, with one loss `L(τ)` against `y(τ)`.
    SequenceToOne,
    /// Any [`Recurrence`]: `h(t) = f(h(t-1), x(t))`, drawn with the given names (fig. 10.2).
    Custom {
        /// The symbols.
        names: CellNames,
        /// Widths `(input, state)`, shown under the folded nodes, if known.
        sizes: Option<(usize, usize)>,
    },
}

impl Topology {
    /// A user's cell, drawn through the generic [`Recurrence`] trait with the given names;
    /// the circuit shows its input and state widths.
    pub fn recurrence<B: Backend, R: Recurrence<B>>(cell: &R, names: CellNames) -> Self {
        Topology::Custom {
            names,
            sizes: Some((cell.input_size(), cell.state_size())),
        }
    }

    /// A custom cell by names alone, without widths.
    pub fn custom(names: CellNames) -> Self {
        Topology::Custom { names, sizes: None }
    }

    /// A short name, usable as a file stem: `hidden_to_hidden`, `output_to_hidden_training`,
    /// `output_to_hidden_deployment`, `sequence_to_one`, `custom_<state>`.
    pub fn slug(&self) -> String {
        match self {
            Topology::HiddenToHidden => "hidden_to_hidden".into(),
            Topology::OutputToHidden(Feedback::TeacherForcing) => {
                "output_to_hidden_training".into()
            }
            Topology::OutputToHidden(Feedback::FreeRunning) => "output_to_hidden_deployment".into(),
            Topology::SequenceToOne => "sequence_to_one".into(),
            Topology::Custom { names, .. } => {
                let stem: String = names
                    .state
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                format!("custom_{stem}")
            }
        }
    }

    /// A human title: `Hidden-to-hidden (Elman)`, ...
    pub fn title(&self) -> String {
        match self {
            Topology::HiddenToHidden => "Hidden-to-hidden (Elman)".into(),
            Topology::OutputToHidden(Feedback::TeacherForcing) => {
                "Output-to-hidden (Jordan), training with teacher forcing".into()
            }
            Topology::OutputToHidden(Feedback::FreeRunning) => {
                "Output-to-hidden (Jordan), deployment".into()
            }
            Topology::SequenceToOne => "Single output at the end (sequence-to-one)".into(),
            Topology::Custom { names, .. } => format!(
                "Custom recurrence {s}(t) = {f}({s}(t-1), {x}(t))",
                s = names.state,
                f = names.transition,
                x = names.input
            ),
        }
    }

    /// The folded circuit: one node per variable, the recurrent edge through a one-step delay.
    pub fn circuit(&self) -> Graph {
        let mut g = Graph::new(format!("{}: circuit", self.title()));
        match self {
            Topology::HiddenToHidden | Topology::SequenceToOne => {
                let x = g.add_node(Node::folded("x", NodeKind::Input));
                let h = g.add_node(Node::folded("h", NodeKind::Hidden));
                let mut o = Node::folded("o", NodeKind::Output);
                let mut loss = Node::folded("L", NodeKind::Loss);
                let mut y = Node::folded("y", NodeKind::Target);
                if *self == Topology::SequenceToOne {
                    for node in [&mut o, &mut loss, &mut y] {
                        node.detail = Some("t = τ".into());
                    }
                }
                let (o, loss, y) = (g.add_node(o), g.add_node(loss), g.add_node(y));
                g.add_edge(&x, &h, Some("U"));
                g.add_delayed_edge(&h, &h, Some("W"));
                g.add_edge(&h, &o, Some("V"));
                g.add_edge(&o, &loss, None);
                g.add_edge(&y, &loss, None);
            }
            Topology::OutputToHidden(feedback) => {
                let x = g.add_node(Node::folded("x", NodeKind::Input));
                let h = g.add_node(Node::folded("h", NodeKind::Hidden));
                let o = g.add_node(Node::folded("o", NodeKind::Output));
                g.add_edge(&x, &h, Some("U"));
                g.add_edge(&h, &o, Some("V"));
                match feedback {
                    Feedback::TeacherForcing => {
                        let loss = g.add_node(Node::folded("L", NodeKind::Loss));
                        let y = g.add_node(Node::folded("y", NodeKind::Target));
                        g.add_edge(&o, &loss, None);
                        g.add_edge(&y, &loss, None);
                        g.add_delayed_edge(&y, &h, Some("W"));
                    }
                    Feedback::FreeRunning => g.add_delayed_edge(&o, &h, Some("W")),
                }
            }
            Topology::Custom { names, sizes } => {
                let mut x = Node::folded(names.input.as_str(), NodeKind::Input);
                let mut h = Node::folded(names.state.as_str(), NodeKind::Hidden);
                if let Some((input, state)) = sizes {
                    x.detail = Some(format!("ℝ{}", superscript(*input)));
                    h.detail = Some(format!("ℝ{}", superscript(*state)));
                }
                let (x, h) = (g.add_node(x), g.add_node(h));
                let f = Some(names.transition.as_str());
                g.add_edge(&x, &h, f);
                g.add_delayed_edge(&h, &h, f);
            }
        }
        g
    }

    /// The graph unfolded over `tau` steps, `t = 1..=tau`, starting from the initial value
    /// (`h(0)`, or the fed-back `y(0)` / `o(0)` for output-to-hidden).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `tau` is 0.
    pub fn try_unfold(&self, tau: usize) -> Result<Graph> {
        if tau == 0 {
            return Err(Error::config("tau", tau, "must be at least 1 step"));
        }
        let mut g = Graph::new(format!("{}: unfolded, τ = {tau}", self.title()));
        match self {
            Topology::HiddenToHidden => {
                let mut h_prev = g.add_node(Node::at("h", 0, NodeKind::Hidden));
                for t in 1..=tau {
                    let h = add_input_and_state(&mut g, t, "x", "h", "U");
                    g.add_edge(&h_prev, &h, Some("W"));
                    add_output_and_loss(&mut g, t, &h);
                    h_prev = h;
                }
            }
            Topology::OutputToHidden(feedback) => {
                let (symbol, kind) = match feedback {
                    Feedback::TeacherForcing => ("y", NodeKind::Target),
                    Feedback::FreeRunning => ("o", NodeKind::Output),
                };
                let mut fed_back = g.add_node(Node::at(symbol, 0, kind));
                for t in 1..=tau {
                    let h = add_input_and_state(&mut g, t, "x", "h", "U");
                    g.add_edge(&fed_back, &h, Some("W"));
                    fed_back = match feedback {
                        Feedback::TeacherForcing => add_output_and_loss(&mut g, t, &h),
                        Feedback::FreeRunning => {
                            let o = g.add_node(Node::at("o", t, NodeKind::Output));
                            g.add_edge(&h, &o, Some("V"));
                            o
                        }
                    };
                }
            }
            Topology::SequenceToOne => {
                let mut h_prev = g.add_node(Node::at("h", 0, NodeKind::Hidden));
                for t in 1..=tau {
                    let h = add_input_and_state(&mut g, t, "x", "h", "U");
                    g.add_edge(&h_prev, &h, Some("W"));
                    h_prev = h;
                }
                add_output_and_loss(&mut g, tau, &h_prev);
            }
            Topology::Custom { names, .. } => {
                let f = names.transition.as_str();
                let mut h_prev = g.add_node(Node::at(names.state.as_str(), 0, NodeKind::Hidden));
                for t in 1..=tau {
                    let h = add_input_and_state(&mut g, t, &names.input, &names.state, f);
                    g.add_edge(&h_prev, &h, Some(f));
                    h_prev = h;
                }
            }
        }
        Ok(g)
    }

    /// [`try_unfold`](Self::try_unfold), panicking with its error message.
    pub fn unfold(&self, tau: usize) -> Graph {
        self.try_unfold(tau).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `n` in superscript digits: 256 → ²⁵⁶.
fn superscript(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .bytes()
        .map(|b| DIGITS[(b - b'0') as usize])
        .collect()
}

/// Adds `x(t)` and `h(t)` with the edge `x(t) → h(t)` labelled `label`; returns `h(t)`.
fn add_input_and_state(g: &mut Graph, t: usize, x: &str, h: &str, label: &str) -> String {
    let x = g.add_node(Node::at(x, t, NodeKind::Input));
    let h = g.add_node(Node::at(h, t, NodeKind::Hidden));
    g.add_edge(&x, &h, Some(label));
    h
}

/// Adds `o(t)`, `L(t)`, `y(t)` with `h(t) → o(t)` via `V`, `o(t) → L(t) ← y(t)`; returns the
/// id of `y(t)`.
fn add_output_and_loss(g: &mut Graph, t: usize, h: &str) -> String {
    let o = g.add_node(Node::at("o", t, NodeKind::Output));
    let loss = g.add_node(Node::at("L", t, NodeKind::Loss));
    let y = g.add_node(Node::at("y", t, NodeKind::Target));
    g.add_edge(h, &o, Some("V"));
    g.add_edge(&o, &loss, None);
    g.add_edge(&y, &loss, None);
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use unfold_nn::ElmanCellConfig;

    type TestBackend = burn::backend::NdArray<f64>;

    #[test]
    fn hidden_to_hidden_circuit_has_one_delayed_w_loop() {
        let g = Topology::HiddenToHidden.circuit();
        assert_eq!(g.node_ids(), ["x", "h", "o", "L", "y"]);
        let delayed: Vec<_> = g.edges.iter().filter(|e| e.delay).collect();
        assert_eq!(delayed.len(), 1);
        assert_eq!(
            (delayed[0].from.as_str(), delayed[0].to.as_str()),
            ("h", "h")
        );
        assert_eq!(delayed[0].label.as_deref(), Some("W"));
    }

    #[test]
    fn unfolding_one_step_has_no_delay_and_one_edge_per_parameter_use() {
        let g = Topology::HiddenToHidden.unfold(1);
        assert!(g.edges.iter().all(|e| !e.delay));
        assert_eq!(
            g.node_ids(),
            ["h(0)", "x(1)", "h(1)", "o(1)", "L(1)", "y(1)"]
        );
        for label in ["U", "W", "V"] {
            let uses = g
                .edges
                .iter()
                .filter(|e| e.label.as_deref() == Some(label))
                .count();
            assert_eq!(uses, 1, "{label}");
        }
    }

    #[test]
    fn unfolded_edge_counts_grow_linearly_with_tau() {
        // Elman: U, W, V, o→L, y→L once per step; five new nodes per step after h(0).
        for tau in 1..6 {
            let g = Topology::HiddenToHidden.unfold(tau);
            assert_eq!(g.nodes.len(), 1 + 5 * tau);
            assert_eq!(g.edges.len(), 5 * tau);
            let g = Topology::SequenceToOne.unfold(tau);
            assert_eq!(g.nodes.len(), 1 + 2 * tau + 3);
            assert_eq!(g.edges.len(), 2 * tau + 3);
        }
    }

    #[test]
    fn teacher_forcing_has_no_state_to_state_edge() {
        let g = Topology::OutputToHidden(Feedback::TeacherForcing).unfold(4);
        assert!(!g
            .edges
            .iter()
            .any(|e| e.from.starts_with("h(") && e.to.starts_with("h(")));
        for t in 1..=4 {
            assert!(g.has_edge(&format!("y({})", t - 1), &format!("h({t})"), Some("W")));
        }
    }

    #[test]
    fn zero_steps_is_a_config_error() {
        let err = Topology::SequenceToOne.try_unfold(0).unwrap_err();
        assert!(matches!(err, Error::Config { field: "tau", .. }), "{err}");
    }

    #[test]
    fn recurrence_topology_reads_the_cell_sizes() {
        let cell = ElmanCellConfig::new(3, 7).init::<TestBackend>(&Default::default());
        let topology = Topology::recurrence(&cell, CellNames::new("u", "s", "g"));
        let g = topology.circuit();
        assert_eq!(g.node("u").and_then(|n| n.detail.as_deref()), Some("ℝ³"));
        assert_eq!(g.node("s").and_then(|n| n.detail.as_deref()), Some("ℝ⁷"));
        assert!(g
            .edges
            .iter()
            .any(|e| e.delay && e.from == "s" && e.to == "s"));
        assert_eq!(topology.slug(), "custom_s");
    }
}
