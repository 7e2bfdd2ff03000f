//! Where each instance of a variant runs on the nodes of a Slurm allocation
//! (`target.slurm.placement`). One function decides it for both `vbench plan` (nodes as the
//! manifest declares them) and `apply` (the allocation's real nodes), so the plan shows what
//! apply will do whenever the allocation is the one the manifest asks for.

use serde::Serialize;

use super::{RoleKind, RoleSpec};
use crate::manifest::Placement;

/// One instance and the node it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InstanceNode {
    pub role: RoleKind,
    /// The instance's index within its role (`prefill-1` is index 1).
    pub index: u32,
    /// The node's position in the allocation, from 0.
    pub node: usize,
}

/// The node of every instance of `roles`, in the order the roles list them. `nodes` holds each
/// node's GPU count (`None`: not known before allocation, so not limiting); an instance needs
/// `tp` GPUs of one node.
pub fn place(
    roles: &[RoleSpec],
    nodes: &[Option<u32>],
    policy: Placement,
) -> Result<Vec<InstanceNode>, String> {
    if nodes.is_empty() {
        return Err("the allocation has no nodes".into());
    }
    match policy {
        Placement::Pack => pack(roles, nodes),
        Placement::Spread => spread(roles, nodes),
    }
}

/// `prefill 1,2 · decode 3`: each role's instances in order, by node number from 1.
pub fn describe(placed: &[InstanceNode]) -> String {
    let mut parts: Vec<(RoleKind, Vec<String>)> = Vec::new();
    for p in placed {
        let number = (p.node + 1).to_string();
        match parts.last_mut() {
            Some((role, nodes)) if *role == p.role => nodes.push(number),
            _ => parts.push((p.role, vec![number])),
        }
    }
    parts
        .iter()
        .map(|(role, nodes)| format!("{} {}", role.as_str(), nodes.join(",")))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Free GPUs per node while a variant is being placed.
struct Free(Vec<Option<u32>>);

impl Free {
    fn fits(&self, node: usize, gpus: u32) -> bool {
        self.0[node].is_none_or(|free| free >= gpus)
    }

    fn take(&mut self, node: usize, gpus: u32) {
        if let Some(free) = &mut self.0[node] {
            *free -= gpus;
        }
    }

    fn describe(&self, group: &[usize]) -> String {
        group
            .iter()
            .map(|&n| match self.0[n] {
                Some(f) => format!("node {}: {f} free", n + 1),
                None => format!("node {}: unknown", n + 1),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every instance of `roles`, in order: (role, index, GPUs it needs).
fn instances(roles: &[RoleSpec]) -> impl Iterator<Item = (RoleKind, u32, u32)> + '_ {
    roles
        .iter()
        .flat_map(|r| (0..r.instances).map(move |i| (r.role, i, r.tp)))
}

/// The whole variant on the first node that holds it; else first fit, instance by instance.
fn pack(roles: &[RoleSpec], nodes: &[Option<u32>]) -> Result<Vec<InstanceNode>, String> {
    let mut free = Free(nodes.to_vec());
    let total: u32 = roles.iter().map(RoleSpec::gpus).sum();
    let whole = (0..nodes.len()).find(|&n| free.fits(n, total));
    instances(roles)
        .map(|(role, index, tp)| {
            let node = match whole {
                Some(n) => n,
                None => (0..nodes.len())
                    .find(|&n| free.fits(n, tp))
                    .ok_or_else(|| {
                        format!(
                            "no node has {tp} free GPUs left for {}-{index} ({})",
                            role.as_str(),
                            free.describe(&(0..nodes.len()).collect::<Vec<_>>())
                        )
                    })?,
            };
            free.take(node, tp);
            Ok(InstanceNode { role, index, node })
        })
        .collect()
}

/// Prefill on the first nodes, decode on the rest, split in proportion to their GPUs (the
/// nearest split that fits); each role's instances go to its least used node in turn. A
/// variant with one role spreads it over every node.
fn spread(roles: &[RoleSpec], nodes: &[Option<u32>]) -> Result<Vec<InstanceNode>, String> {
    let n = nodes.len();
    let all: Vec<usize> = (0..n).collect();
    if roles.len() < 2 {
        return spread_over(roles, &[&all], nodes);
    }
    if n < 2 {
        return Err(
            "spread puts prefill and decode on different nodes, but the allocation has \
                    1 node: allocate more (target.slurm.nodes) or use placement = \"pack\""
                .into(),
        );
    }
    let (prefill, decode) = (roles[0].gpus() as f64, roles[1].gpus() as f64);
    let ideal = n as f64 * prefill / (prefill + decode);
    let mut splits: Vec<usize> = (1..n).collect();
    splits.sort_by(|a, b| {
        (*a as f64 - ideal)
            .abs()
            .total_cmp(&(*b as f64 - ideal).abs())
            .then(b.cmp(a))
    });
    let mut first_error = None;
    for k in splits {
        let groups = [&all[..k], &all[k..]];
        match spread_over(roles, &groups, nodes) {
            Ok(placed) => return Ok(placed),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one split was tried"))
}

/// Role `i` over the nodes of `groups[i]` (or the only group), each instance on the node of
/// its group that holds the fewest of the variant's instances and has room for it.
fn spread_over(
    roles: &[RoleSpec],
    groups: &[&[usize]],
    nodes: &[Option<u32>],
) -> Result<Vec<InstanceNode>, String> {
    let mut free = Free(nodes.to_vec());
    let mut used = vec![0u32; nodes.len()];
    let mut placed = Vec::new();
    for (r, role) in roles.iter().enumerate() {
        let group = groups[r.min(groups.len() - 1)];
        for index in 0..role.instances {
            let node = group
                .iter()
                .copied()
                .filter(|&n| free.fits(n, role.tp))
                .min_by_key(|&n| (used[n], n))
                .ok_or_else(|| {
                    format!(
                        "spread: no node for {} has {} free GPUs left for {}-{index} ({})",
                        role.role.as_str(),
                        role.tp,
                        role.role.as_str(),
                        free.describe(group)
                    )
                })?;
            free.take(node, role.tp);
            used[node] += 1;
            placed.push(InstanceNode {
                role: role.role,
                index,
                node,
            });
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(role: RoleKind, instances: u32, tp: u32) -> RoleSpec {
        RoleSpec {
            role,
            instances,
            tp,
            gpu_memory_utilization: 0.8,
            extra_args: vec![],
            env: Default::default(),
        }
    }

    fn pd(p: u32, d: u32, tp: u32) -> Vec<RoleSpec> {
        vec![
            role(RoleKind::Prefill, p, tp),
            role(RoleKind::Decode, d, tp),
        ]
    }

    fn shown(roles: &[RoleSpec], nodes: &[Option<u32>], policy: Placement) -> String {
        match place(roles, nodes, policy) {
            Ok(p) => describe(&p),
            Err(e) => e,
        }
    }

    #[test]
    fn spread_puts_two_prefills_and_a_decode_on_three_nodes() {
        assert_eq!(
            shown(&pd(2, 1, 1), &[Some(4); 3], Placement::Spread),
            "prefill 1,2 · decode 3"
        );
        assert_eq!(
            shown(&pd(1, 1, 1), &[None; 2], Placement::Spread),
            "prefill 1 · decode 2"
        );
        // Decode with more GPUs gets more nodes.
        assert_eq!(
            shown(&pd(1, 4, 1), &[Some(8); 3], Placement::Spread),
            "prefill 1 · decode 2,3,2,3"
        );
    }

    #[test]
    fn spread_moves_the_split_until_both_roles_fit() {
        // Two TP2 prefills and a TP4 decode: the ideal split (2 nodes | 1) leaves the decode
        // a 2-GPU node; the next one (1 | 2) fits.
        let roles = [role(RoleKind::Prefill, 2, 2), role(RoleKind::Decode, 1, 4)];
        assert_eq!(
            shown(&roles, &[Some(4), Some(4), Some(2)], Placement::Spread),
            "prefill 1,1 · decode 2"
        );
    }

    #[test]
    fn spread_refuses_one_node_and_a_variant_that_fits_nowhere() {
        let e = shown(&pd(1, 1, 1), &[Some(8)], Placement::Spread);
        assert!(e.contains("has 1 node"), "{e}");
        let e = shown(&pd(1, 1, 8), &[Some(4); 2], Placement::Spread);
        assert!(e.contains("no node for prefill has 8 free GPUs"), "{e}");
        assert!(e.contains("node 1: 4 free"), "{e}");
        // A single-role variant spreads its replicas.
        let simple = [role(RoleKind::Serve, 3, 1)];
        assert_eq!(shown(&simple, &[Some(8)], Placement::Spread), "serve 1,1,1");
        assert_eq!(
            shown(&simple, &[Some(8); 2], Placement::Spread),
            "serve 1,2,1"
        );
    }

    #[test]
    fn pack_keeps_a_variant_on_one_node_when_it_fits() {
        assert_eq!(
            shown(&pd(2, 1, 1), &[Some(4); 3], Placement::Pack),
            "prefill 1,1 · decode 1"
        );
        // 2 GPUs left on node 1: the 4-GPU variant goes to node 2 whole.
        assert_eq!(
            shown(&pd(2, 2, 1), &[Some(2), Some(4)], Placement::Pack),
            "prefill 2,2 · decode 2,2"
        );
        // Larger than any node: first fit over several.
        assert_eq!(
            shown(&pd(2, 2, 2), &[Some(4); 2], Placement::Pack),
            "prefill 1,1 · decode 2,2"
        );
        let e = shown(&pd(1, 1, 8), &[Some(4); 2], Placement::Pack);
        assert!(
            e.contains("no node has 8 free GPUs left for prefill-0"),
            "{e}"
        );
    }
}
