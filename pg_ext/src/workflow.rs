//! Workflow graph checks. Everything else about workflows is SQL (`sql/workflows.sql`); finding
//! a cycle is a graph algorithm, which is clearer and linear-time here.

use pgrx::prelude::*;

/// Finds a dependency cycle among `n` nodes, where edge i means node `child[i]` depends on
/// node `parent[i]` (0-based). Returns the nodes of one cycle in dependency order, or an empty
/// array when the graph is acyclic. Kahn's algorithm: O(nodes + edges).
#[pg_extern(immutable, parallel_safe)]
fn _find_cycle(n: i32, child: Vec<i32>, parent: Vec<i32>) -> Vec<i32> {
    find_cycle(n as usize, &child, &parent)
}

fn find_cycle(n: usize, child: &[i32], parent: &[i32]) -> Vec<i32> {
    let mut parents_left = vec![0usize; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (&c, &p) in child.iter().zip(parent) {
        let (c, p) = (c as usize, p as usize);
        parents_left[c] += 1;
        children[p].push(c);
        parents[c].push(p);
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| parents_left[i] == 0).collect();
    let mut done = vec![false; n];
    while let Some(node) = ready.pop() {
        done[node] = true;
        for &c in &children[node] {
            parents_left[c] -= 1;
            if parents_left[c] == 0 {
                ready.push(c);
            }
        }
    }
    // Every node left has a parent that is also left, so walking parents from any of them
    // must revisit a node: the part from its first visit on is a cycle.
    let Some(start) = (0..n).find(|&i| !done[i]) else {
        return Vec::new();
    };
    let mut position = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut node = start;
    while position[node] == usize::MAX {
        position[node] = path.len();
        path.push(node);
        node = *parents[node]
            .iter()
            .find(|&&p| !done[p])
            .expect("a node on a cycle has a parent on it");
    }
    let mut cycle: Vec<i32> = path[position[node]..].iter().map(|&i| i as i32).collect();
    cycle.reverse(); // parents first: "a -> b" reads "b depends on a"
    cycle
}

#[cfg(test)]
mod tests {
    use super::find_cycle;

    #[test]
    fn acyclic_graphs_have_no_cycle() {
        assert!(find_cycle(0, &[], &[]).is_empty());
        assert!(find_cycle(3, &[1, 2], &[0, 1]).is_empty());
        // diamond
        assert!(find_cycle(4, &[1, 2, 3, 3], &[0, 0, 1, 2]).is_empty());
    }

    #[test]
    fn finds_the_cycle_and_only_it() {
        assert_eq!(find_cycle(1, &[0], &[0]), vec![0]);
        // 0 is a root; 1 -> 2 -> 3 -> 1 is a cycle hanging off it.
        let mut cycle = find_cycle(4, &[1, 2, 3, 1], &[0, 1, 2, 3]);
        cycle.sort();
        assert_eq!(cycle, vec![1, 2, 3]);
    }

    #[test]
    fn a_200000_node_chain_is_acyclic_and_does_not_overflow_the_stack() {
        let n = 200_000;
        let child: Vec<i32> = (1..n).collect();
        let parent: Vec<i32> = (0..n - 1).collect();
        assert!(find_cycle(n as usize, &child, &parent).is_empty());
    }
}
