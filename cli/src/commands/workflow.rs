//! `colony workflow show ID`: a workflow's DAG as a tree of nodes with their states.

use crate::context::Context;
use crate::error::{CliError, Context as _, Result};
use crate::output::{self, state_name_of, when};
use clap::Subcommand;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use termtree::Tree;

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Show a workflow's graph: each node under its parents, with its process and state.
    Show {
        /// The workflow id.
        id: i64,
    },
}

/// A node as `colony_assign.workflow()` gives it.
#[derive(Debug, Deserialize)]
struct Node {
    nodename: String,
    process_id: i64,
    state: serde_json::Value,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    children: Vec<String>,
}

pub async fn run(ctx: &Context, command: WorkflowCommand) -> Result<()> {
    let WorkflowCommand::Show { id } = command;
    let graph = ctx
        .reader()?
        .workflow(id)
        .await
        .context(|| format!("get workflow {id}"))?;
    if ctx.json() {
        return output::print_json(&graph);
    }
    let nodes: Vec<Node> = serde_json::from_value(graph["nodes"].clone()).map_err(|e| {
        CliError::Input(format!(
            "workflow {id}: the coordinator sent nodes this CLI cannot read: {e}"
        ))
    })?;
    output::print_line(format_args!(
        "workflow {id} in colony {}: {}, submitted {}",
        graph["colony"].as_str().unwrap_or("?"),
        state_name_of(&graph["state"]),
        when(graph["submitted_at"].as_str()),
    ))?;
    print!("{}", render(&nodes));
    Ok(())
}

/// The DAG as text: roots at the top level, every node under each of its parents. A node
/// with several parents is drawn in full under the first and referred to under the others,
/// so the tree stays as large as the graph.
fn render(nodes: &[Node]) -> String {
    let by_name: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.nodename.as_str(), n)).collect();
    let mut shown = HashSet::new();
    let mut out = String::new();
    for root in nodes.iter().filter(|n| n.parents.is_empty()) {
        out.push_str(&subtree(root, &by_name, &mut shown).to_string());
    }
    out
}

fn subtree<'a>(
    node: &'a Node,
    by_name: &BTreeMap<&str, &'a Node>,
    shown: &mut HashSet<&'a str>,
) -> Tree<String> {
    let label = format!(
        "{} [process {}] {}",
        node.nodename,
        node.process_id,
        state_name_of(&node.state)
    );
    if !shown.insert(node.nodename.as_str()) {
        return Tree::new(format!("{label} (see above)"));
    }
    let mut tree = Tree::new(label);
    for child in &node.children {
        if let Some(child) = by_name.get(child.as_str()) {
            tree.push(subtree(child, by_name, shown));
        }
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diamond_draws_the_shared_child_once() {
        let nodes: Vec<Node> = serde_json::from_value(json!([
            {"nodename": "a", "process_id": 1, "state": 2, "parents": [], "children": ["b", "c"]},
            {"nodename": "b", "process_id": 2, "state": 1, "parents": ["a"], "children": ["d"]},
            {"nodename": "c", "process_id": 3, "state": 2, "parents": ["a"], "children": ["d"]},
            {"nodename": "d", "process_id": 4, "state": 0, "parents": ["b", "c"], "children": []},
        ]))
        .unwrap();
        let text = render(&nodes);
        assert_eq!(
            text,
            "a [process 1] SUCCESS\n\
             ├── b [process 2] RUNNING\n\
             │   └── d [process 4] WAITING\n\
             └── c [process 3] SUCCESS\n    \
                 └── d [process 4] WAITING (see above)\n"
        );
    }
}
