//! The diagrams of every topology, checked node by node and edge by edge.
//!
//! Each expected graph below is written out by hand from the textbook's figures (Goodfellow et
//! al., ch. 10: fig. 10.3 hidden-to-hidden, 10.4/10.6 output-to-hidden with teacher forcing,
//! 10.5 single output at the end, 10.2 a generic `h(t) = f(h(t-1), x(t))`), as plain lists,
//! and compared with what `Topology` builds, both on the graph model and in the DOT text.

use std::collections::BTreeSet;

use unfold_viz::{dot_available, CellNames, DiagramWriter, Feedback, Graph, Svg, Topology};

type Edges = BTreeSet<(String, String, Option<String>)>;

fn names(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn edges(list: &[(&str, &str, Option<&str>)]) -> Edges {
    list.iter()
        .map(|(a, b, l)| (a.to_string(), b.to_string(), l.map(str::to_string)))
        .collect()
}

/// The graph's nodes and edges, with no duplicates.
fn parts(g: &Graph) -> (BTreeSet<String>, Edges) {
    let nodes: BTreeSet<String> = g.node_ids().into_iter().map(String::from).collect();
    assert_eq!(nodes.len(), g.nodes.len(), "duplicate node in {}", g.title);
    let edge_set: Edges = g
        .edge_list()
        .into_iter()
        .map(|(a, b, l)| (a.to_string(), b.to_string(), l.map(str::to_string)))
        .collect();
    assert_eq!(
        edge_set.len(),
        g.edges.len(),
        "duplicate edge in {}",
        g.title
    );
    (nodes, edge_set)
}

/// The nodes and edges read back from the DOT text (node statements `"id" [label=...]` and
/// edge statements `"a" -> "b" [...]`, or `"b" -> "a" [dir=back, ...]`), ignoring the
/// invisible ordering edges.
fn dot_parts(dot: &str) -> (BTreeSet<String>, Edges) {
    let mut nodes = BTreeSet::new();
    let mut edge_set = Edges::new();
    for line in dot.lines().map(str::trim) {
        if line.starts_with('"') && line.contains(" [label=<") {
            nodes.insert(line[1..line.find("\" [").unwrap()].to_string());
        } else if line.starts_with('"') && line.contains("\" -> \"") {
            let (from, rest) = line[1..].split_once("\" -> \"").unwrap();
            let (to, attrs) = rest.split_once("\" [").unwrap();
            let label = attrs
                .split_once("label=\" ")
                .map(|(_, l)| l.split_once(" \"").unwrap().0.to_string());
            // An edge running down the drawing is written upwards with its arrow at the tail.
            let (from, to) = if attrs.contains("dir=back") {
                (to, from)
            } else {
                (from, to)
            };
            edge_set.insert((from.to_string(), to.to_string(), label));
        }
    }
    (nodes, edge_set)
}

fn check(g: &Graph, want_nodes: &[&str], want_edges: &[(&str, &str, Option<&str>)]) {
    let (nodes, edge_set) = parts(g);
    assert_eq!(nodes, names(want_nodes), "nodes of {}", g.title);
    assert_eq!(edge_set, edges(want_edges), "edges of {}", g.title);
    assert_eq!(g.nodes.len(), want_nodes.len());
    assert_eq!(g.edges.len(), want_edges.len());
    // Unfolded graphs have no delay: the DOT text holds exactly the same nodes and edges.
    assert!(g.edges.iter().all(|e| !e.delay));
    let (dot_nodes, dot_edges) = dot_parts(&g.to_dot());
    assert_eq!(dot_nodes, nodes, "DOT nodes of {}", g.title);
    assert_eq!(dot_edges, edge_set, "DOT edges of {}", g.title);
}

/// A topology, its circuit's nodes, and its one delayed edge `(from, to, label)`.
type Circuit = (
    Topology,
    &'static [&'static str],
    (&'static str, &'static str, &'static str),
);

const U: Option<&str> = Some("U");
const V: Option<&str> = Some("V");
const W: Option<&str> = Some("W");

#[test]
fn hidden_to_hidden_unfolded_three_steps_has_exactly_the_textbook_graph() {
    check(
        &Topology::HiddenToHidden.unfold(3),
        &[
            "h(0)", "x(1)", "h(1)", "o(1)", "L(1)", "y(1)", "x(2)", "h(2)", "o(2)", "L(2)", "y(2)",
            "x(3)", "h(3)", "o(3)", "L(3)", "y(3)",
        ],
        &[
            ("x(1)", "h(1)", U),
            ("x(2)", "h(2)", U),
            ("x(3)", "h(3)", U),
            ("h(0)", "h(1)", W),
            ("h(1)", "h(2)", W),
            ("h(2)", "h(3)", W),
            ("h(1)", "o(1)", V),
            ("h(2)", "o(2)", V),
            ("h(3)", "o(3)", V),
            ("o(1)", "L(1)", None),
            ("o(2)", "L(2)", None),
            ("o(3)", "L(3)", None),
            ("y(1)", "L(1)", None),
            ("y(2)", "L(2)", None),
            ("y(3)", "L(3)", None),
        ],
    );
}

#[test]
fn output_to_hidden_training_feeds_the_targets_back() {
    check(
        &Topology::OutputToHidden(Feedback::TeacherForcing).unfold(3),
        &[
            "y(0)", "x(1)", "h(1)", "o(1)", "L(1)", "y(1)", "x(2)", "h(2)", "o(2)", "L(2)", "y(2)",
            "x(3)", "h(3)", "o(3)", "L(3)", "y(3)",
        ],
        &[
            ("x(1)", "h(1)", U),
            ("x(2)", "h(2)", U),
            ("x(3)", "h(3)", U),
            ("y(0)", "h(1)", W),
            ("y(1)", "h(2)", W),
            ("y(2)", "h(3)", W),
            ("h(1)", "o(1)", V),
            ("h(2)", "o(2)", V),
            ("h(3)", "o(3)", V),
            ("o(1)", "L(1)", None),
            ("o(2)", "L(2)", None),
            ("o(3)", "L(3)", None),
            ("y(1)", "L(1)", None),
            ("y(2)", "L(2)", None),
            ("y(3)", "L(3)", None),
        ],
    );
}

#[test]
fn output_to_hidden_deployment_feeds_the_outputs_back_without_loss() {
    check(
        &Topology::OutputToHidden(Feedback::FreeRunning).unfold(3),
        &[
            "o(0)", "x(1)", "h(1)", "o(1)", "x(2)", "h(2)", "o(2)", "x(3)", "h(3)", "o(3)",
        ],
        &[
            ("x(1)", "h(1)", U),
            ("x(2)", "h(2)", U),
            ("x(3)", "h(3)", U),
            ("o(0)", "h(1)", W),
            ("o(1)", "h(2)", W),
            ("o(2)", "h(3)", W),
            ("h(1)", "o(1)", V),
            ("h(2)", "o(2)", V),
            ("h(3)", "o(3)", V),
        ],
    );
}

#[test]
fn sequence_to_one_reads_out_only_the_last_state() {
    check(
        &Topology::SequenceToOne.unfold(3),
        &[
            "h(0)", "x(1)", "h(1)", "x(2)", "h(2)", "x(3)", "h(3)", "o(3)", "L(3)", "y(3)",
        ],
        &[
            ("x(1)", "h(1)", U),
            ("x(2)", "h(2)", U),
            ("x(3)", "h(3)", U),
            ("h(0)", "h(1)", W),
            ("h(1)", "h(2)", W),
            ("h(2)", "h(3)", W),
            ("h(3)", "o(3)", V),
            ("o(3)", "L(3)", None),
            ("y(3)", "L(3)", None),
        ],
    );
}

#[test]
fn custom_cell_is_drawn_with_the_users_names() {
    let f = Some("g");
    check(
        &Topology::custom(CellNames::new("u", "s", "g")).unfold(3),
        &["s(0)", "u(1)", "s(1)", "u(2)", "s(2)", "u(3)", "s(3)"],
        &[
            ("u(1)", "s(1)", f),
            ("u(2)", "s(2)", f),
            ("u(3)", "s(3)", f),
            ("s(0)", "s(1)", f),
            ("s(1)", "s(2)", f),
            ("s(2)", "s(3)", f),
        ],
    );
}

/// Folded circuits: each recurrent edge is one delayed edge, drawn through one black square.
#[test]
fn circuits_put_the_delay_on_the_recurrent_edge_only() {
    let cases: [Circuit; 5] = [
        (
            Topology::HiddenToHidden,
            &["x", "h", "o", "L", "y"],
            ("h", "h", "W"),
        ),
        (
            Topology::OutputToHidden(Feedback::TeacherForcing),
            &["x", "h", "o", "L", "y"],
            ("y", "h", "W"),
        ),
        (
            Topology::OutputToHidden(Feedback::FreeRunning),
            &["x", "h", "o"],
            ("o", "h", "W"),
        ),
        (
            Topology::SequenceToOne,
            &["x", "h", "o", "L", "y"],
            ("h", "h", "W"),
        ),
        (
            Topology::custom(CellNames::default()),
            &["x", "h"],
            ("h", "h", "f"),
        ),
    ];
    for (topology, want_nodes, (from, to, label)) in cases {
        let g = topology.circuit();
        let (nodes, _) = parts(&g);
        assert_eq!(nodes, names(want_nodes), "{}", g.title);
        let delayed: Vec<_> = g.edges.iter().filter(|e| e.delay).collect();
        assert_eq!(delayed.len(), 1, "{}", g.title);
        assert_eq!(
            (delayed[0].from.as_str(), delayed[0].to.as_str()),
            (from, to),
            "{}",
            g.title
        );
        assert_eq!(delayed[0].label.as_deref(), Some(label));
        let dot = g.to_dot();
        assert_eq!(dot.matches("fillcolor=black").count(), 1, "{dot}");
        // The delayed edge is two DOT edges through the square; every other edge is one.
        assert_eq!(
            dot.matches(" -> ").count() - invisible_edges(&dot),
            g.edges.len() + 1
        );
    }
}

fn invisible_edges(dot: &str) -> usize {
    dot.lines()
        .filter(|l| l.contains("[style=invis]"))
        .map(|l| l.matches(" -> ").count())
        .sum()
}

#[test]
fn writer_renders_svg_with_graphviz_or_says_it_is_missing() {
    let dir = std::env::temp_dir().join(format!("unfold-viz-graphs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let [circuit, unfolded] = DiagramWriter::new(&dir)
        .write_topology(&Topology::HiddenToHidden, 3)
        .unwrap();
    assert_eq!(circuit.dot, dir.join("hidden_to_hidden_circuit.dot"));
    assert_eq!(unfolded.dot, dir.join("hidden_to_hidden_unfolded.dot"));
    let dot = std::fs::read_to_string(&unfolded.dot).unwrap();
    assert_eq!(dot, Topology::HiddenToHidden.unfold(3).to_dot());
    match (&unfolded.svg, dot_available()) {
        (Svg::Written(path), true) => {
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(svg.contains("<svg"), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
            // Graphviz keeps node ids as <title>s.
            assert!(svg.contains("<title>h(3)</title>"), "{svg}");
        }
        (Svg::NoGraphviz { .. }, false) => {
            eprintln!("Graphviz is not installed: checked the DOT files only");
            assert!(!dir.join("hidden_to_hidden_unfolded.svg").exists());
        }
        (svg, available) => panic!("{svg:?} with dot available = {available}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
