//! A small graph model of a recurrent network's computation, and its Graphviz DOT text.
//!
//! A [`Graph`] is a list of [`Node`]s (`x(t)`, `h(t)`, `o(t)`, `L(t)`, `y(t)`, or their folded
//! forms `x`, `h`, ...) and labelled [`Edge`]s (`U`, `W`, `V`). An edge may carry a one-step
//! delay, drawn as the textbook's black square on the recurrent edge of a circuit diagram.
//! [`Topology`](crate::Topology) builds the graphs of unfold's networks; a user can build any
//! other with [`Graph::add_node`] and [`Graph::add_edge`]. Tests check nodes and edges on the
//! model itself, and [`Graph::to_dot`] turns it into text for Graphviz.

use std::fmt::Write as _;

/// What a node stands for; sets its row in the drawing and its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// An input `x(t)`.
    Input,
    /// A state `h(t)`.
    Hidden,
    /// An output `o(t)`.
    Output,
    /// A loss `L(t)`.
    Loss,
    /// A target `y(t)`.
    Target,
}

impl NodeKind {
    fn fill(self) -> &'static str {
        match self {
            NodeKind::Input => "#e8f1fb",
            NodeKind::Hidden => "#cfe3f7",
            NodeKind::Output => "#fdebd3",
            NodeKind::Loss => "#f8d7d5",
            NodeKind::Target => "#e3f3df",
        }
    }
}

/// A node: a variable of the computation, at one time step (unfolded) or at every step
/// (folded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique name, as the textbook writes it: `h(2)` unfolded, `h` folded.
    pub id: String,
    /// The variable's symbol, `h`.
    pub symbol: String,
    /// The time step, `Some(2)` for `h(2)`; `None` in a folded circuit.
    pub time: Option<usize>,
    /// What the node stands for.
    pub kind: NodeKind,
    /// A second line under the symbol (a width such as `ℝ²⁵⁶`, or a note), if any.
    pub detail: Option<String>,
}

impl Node {
    /// A node of a folded circuit: its id is the bare symbol.
    pub fn folded(symbol: impl Into<String>, kind: NodeKind) -> Self {
        let symbol = symbol.into();
        Self {
            id: symbol.clone(),
            symbol,
            time: None,
            kind,
            detail: None,
        }
    }

    /// A node of an unfolded graph at step `time`: its id is `symbol(time)`.
    pub fn at(symbol: impl Into<String>, time: usize, kind: NodeKind) -> Self {
        let symbol = symbol.into();
        Self {
            id: format!("{symbol}({time})"),
            symbol,
            time: Some(time),
            kind,
            detail: None,
        }
    }

    /// Adds a second line under the symbol.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A directed edge `from → to`, optionally labelled with the parameter it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Id of the source node.
    pub from: String,
    /// Id of the target node.
    pub to: String,
    /// The parameter on the edge (`U`, `W`, `V`), if any.
    pub label: Option<String>,
    /// A one-step delay: the value reaches `to` at the next time step. Drawn as a black square
    /// on the edge; only folded circuits have such edges.
    pub delay: bool,
}

/// A diagram: nodes and labelled edges, with a title.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Graph {
    /// The title drawn above the diagram.
    pub title: String,
    /// The nodes, in insertion order.
    pub nodes: Vec<Node>,
    /// The edges, in insertion order.
    pub edges: Vec<Edge>,
}

impl Graph {
    /// An empty graph titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Adds `node` and returns its id. Panics if a node with the same id is already there
    /// (the graph builders never do that; a duplicate would silently merge two variables).
    pub fn add_node(&mut self, node: Node) -> String {
        assert!(
            self.node(&node.id).is_none(),
            "graph `{}` already has a node `{}`",
            self.title,
            node.id
        );
        let id = node.id.clone();
        self.nodes.push(node);
        id
    }

    /// Adds the edge `from → to` with an optional parameter label. Panics if either end is
    /// not a node of the graph.
    pub fn add_edge(&mut self, from: &str, to: &str, label: Option<&str>) {
        self.push_edge(from, to, label, false);
    }

    /// Adds the edge `from → to` through a one-step delay (the recurrent edge of a circuit).
    pub fn add_delayed_edge(&mut self, from: &str, to: &str, label: Option<&str>) {
        self.push_edge(from, to, label, true);
    }

    fn push_edge(&mut self, from: &str, to: &str, label: Option<&str>, delay: bool) {
        for end in [from, to] {
            assert!(
                self.node(end).is_some(),
                "graph `{}` has no node `{end}` for the edge {from} → {to}",
                self.title
            );
        }
        self.edges.push(Edge {
            from: from.to_string(),
            to: to.to_string(),
            label: label.map(str::to_string),
            delay,
        });
    }

    /// The node named `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Node ids, in insertion order.
    pub fn node_ids(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.id.as_str()).collect()
    }

    /// Every edge as `(from, to, label)`, in insertion order.
    pub fn edge_list(&self) -> Vec<(&str, &str, Option<&str>)> {
        self.edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.label.as_deref()))
            .collect()
    }

    /// Whether the graph has an edge `from → to` labelled `label`.
    pub fn has_edge(&self, from: &str, to: &str, label: Option<&str>) -> bool {
        self.edges
            .iter()
            .any(|e| e.from == from && e.to == to && e.label.as_deref() == label)
    }

    /// The graph as Graphviz DOT text.
    ///
    /// Rows from bottom to top: inputs, states, outputs with the targets beside them, losses
    /// (`rankdir=BT`, as in the textbook's figures); unfolded nodes of one step share a column,
    /// steps run left to right. Node labels read `h` with the step as a superscript, `h⁽²⁾`. A
    /// delayed edge goes through a small black square node (`delay_*`), the textbook's
    /// one-step-delay marker, placed beside the receiving node.
    pub fn to_dot(&self) -> String {
        let mut dot = String::new();
        let w = &mut dot;
        // `write!` into a String cannot fail.
        let _ = writeln!(w, "digraph {} {{", quote(&self.title));
        let _ = writeln!(
            w,
            "  graph [rankdir=BT, label={}, labelloc=t, fontname=\"Helvetica\", fontsize=16, \
             nodesep=0.45, ranksep=0.55, newrank=true];",
            quote(&self.title)
        );
        let _ = writeln!(
            w,
            "  node [shape=circle, style=filled, fixedsize=true, width=0.62, \
             fontname=\"Times-Italic\", fontsize=17, color=\"#4a4a4a\", penwidth=1.2];"
        );
        let _ = writeln!(
            w,
            "  edge [fontname=\"Times-Italic\", fontsize=15, color=\"#333333\", arrowsize=0.8];"
        );
        for node in &self.nodes {
            let _ = writeln!(
                w,
                "  {} [label={}, fillcolor={}{}];",
                quote(&node.id),
                html_label(node),
                quote(node.kind.fill()),
                node.time
                    .map(|t| format!(", group=\"t{t}\""))
                    .unwrap_or_default()
            );
        }
        // Rows, bottom to top: inputs; states; outputs with targets beside them; losses.
        // Invisible edges keep each row in time order (and `o(t)` left of `y(t)`).
        let row_of = |kind: NodeKind| match kind {
            NodeKind::Input => 0,
            NodeKind::Hidden => 1,
            NodeKind::Output | NodeKind::Target => 2,
            NodeKind::Loss => 3,
        };
        for row in 0..4 {
            let mut members: Vec<&Node> = self
                .nodes
                .iter()
                .filter(|n| row_of(n.kind) == row)
                .collect();
            if members.is_empty() {
                continue;
            }
            members.sort_by_key(|n| (n.time, n.kind));
            let ids: Vec<String> = members.iter().map(|n| quote(&n.id)).collect();
            let _ = write!(w, "  {{ rank=same; {};", ids.join("; "));
            if ids.len() > 1 {
                let _ = write!(w, " {} [style=invis];", ids.join(" -> "));
            }
            let _ = writeln!(w, " }}");
        }
        let row_of_id = |id: &str| self.node(id).map_or(0, |n| row_of(n.kind));
        for (i, edge) in self.edges.iter().enumerate() {
            let label = edge
                .label
                .as_deref()
                .map(|l| format!("label={}", quote(&format!(" {l} "))));
            let (from, to) = (edge.from.as_str(), edge.to.as_str());
            if !edge.delay {
                arrow(w, from, to, row_of_id(from) > row_of_id(to), label);
                continue;
            }
            // The delay: a black square beside the receiving node, the edge drawn through it.
            let square = format!("delay_{i}");
            let _ = writeln!(
                w,
                "  {} [shape=square, width=0.13, height=0.13, label=\"\", style=filled, \
                 fillcolor=black, color=black, tooltip=\"one-step delay\"];",
                quote(&square)
            );
            let _ = writeln!(w, "  {{ rank=same; {}; {}; }}", quote(to), quote(&square));
            // The square sits in the receiving node's row; the returning half is written from
            // the node to the square with its arrow drawn back at the node, which keeps the
            // square to the node's right. For a loop, a blank label lifts the outgoing half
            // into an arc above the returning one. (Compass ports, `h:n -> ...`, would draw a
            // rounder loop, but Graphviz 2.43 mis-parses labelled flat edges with ports.)
            let (low, high) = if row_of_id(from) > row_of_id(to) {
                (square.as_str(), from)
            } else {
                (from, square.as_str())
            };
            let lift = (from == to).then(|| "label=\"     \"".to_string());
            let _ = writeln!(
                w,
                "  {} -> {} [{}];",
                quote(low),
                quote(high),
                join(["arrowhead=none".to_string()].into_iter().chain(lift))
            );
            arrow(w, &square, to, true, label);
        }
        let _ = writeln!(w, "}}");
        dot
    }
}

/// Writes the edge `from → to`. DOT ranks its nodes along edge directions, so an edge that
/// runs down the drawing (`down`: from a higher row to a lower one, such as a fed-back target
/// into the next state) is written upwards, `to -> from`, with its arrow drawn back at `to`.
fn arrow(w: &mut String, from: &str, to: &str, down: bool, label: Option<String>) {
    let (tail, head, dir) = if down {
        (to, from, Some("dir=back".to_string()))
    } else {
        (from, to, None)
    };
    let attrs = join(dir.into_iter().chain(label));
    let _ = writeln!(w, "  {} -> {} [{attrs}];", quote(tail), quote(head));
}

fn join(attrs: impl Iterator<Item = String>) -> String {
    attrs.collect::<Vec<_>>().join(", ")
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Escapes text for a Graphviz HTML-like label.
fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `<h<sup>(2)</sup>>`, with the detail on a second, smaller line.
fn html_label(node: &Node) -> String {
    let mut label = escape_html(&node.symbol);
    if let Some(t) = node.time {
        let _ = write!(label, "<sup>({t})</sup>");
    }
    if let Some(detail) = &node.detail {
        let _ = write!(
            label,
            "<br/><font face=\"Helvetica\" point-size=\"9\">{}</font>",
            escape_html(detail)
        );
    }
    format!("<{label}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Graph {
        let mut g = Graph::new("tiny \"one\"");
        let x = g.add_node(Node::at("x", 1, NodeKind::Input));
        let h = g.add_node(Node::at("h", 1, NodeKind::Hidden).with_detail("a<b"));
        g.add_edge(&x, &h, Some("U"));
        g
    }

    #[test]
    fn dot_declares_every_node_and_edge_once() {
        let dot = tiny().to_dot();
        assert_eq!(dot.matches("\"x(1)\" [label=<").count(), 1);
        assert_eq!(dot.matches("\"h(1)\" [label=<").count(), 1);
        assert_eq!(
            dot.matches("\"x(1)\" -> \"h(1)\" [label=\" U \"]").count(),
            1
        );
        assert_eq!(dot.matches("->").count(), 1);
    }

    #[test]
    fn dot_escapes_quotes_and_html() {
        let dot = tiny().to_dot();
        assert!(dot.starts_with("digraph \"tiny \\\"one\\\"\" {"), "{dot}");
        assert!(dot.contains("a&lt;b"), "{dot}");
        assert!(!dot.contains("a<b"), "{dot}");
    }

    #[test]
    fn delayed_edge_goes_through_one_black_square() {
        let mut g = Graph::new("loop");
        let h = g.add_node(Node::folded("h", NodeKind::Hidden));
        g.add_delayed_edge(&h, &h, Some("W"));
        let dot = g.to_dot();
        assert_eq!(dot.matches("fillcolor=black").count(), 1, "{dot}");
        assert!(
            dot.contains("\"h\" -> \"delay_0\" [arrowhead=none"),
            "{dot}"
        );
        assert!(
            dot.contains("\"h\" -> \"delay_0\" [dir=back, label=\" W \"]"),
            "{dot}"
        );
        assert_eq!(g.edges.len(), 1);
        assert!(g.edges[0].delay);
    }

    #[test]
    #[should_panic(expected = "already has a node `h`")]
    fn duplicate_node_is_refused() {
        let mut g = Graph::new("dup");
        g.add_node(Node::folded("h", NodeKind::Hidden));
        g.add_node(Node::folded("h", NodeKind::Hidden));
    }

    #[test]
    #[should_panic(expected = "has no node `z`")]
    fn edge_to_unknown_node_is_refused() {
        let mut g = Graph::new("bad");
        g.add_node(Node::folded("h", NodeKind::Hidden));
        g.add_edge("h", "z", None);
    }
}
