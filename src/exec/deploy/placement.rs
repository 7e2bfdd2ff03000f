//! Where each instance runs: GPUs from the pool (CUDA), cores from the pool (the CPU build), or
//! a node of the Slurm allocation (as `plan::placement` decides on the allocation's nodes;
//! Slurm binds the GPUs itself).

use anyhow::Context;

use super::{Target, HOST};
use crate::exec::slurm::SlurmNode;
use crate::manifest::{Accelerator, Backend};
use crate::plan::placement::{self, InstanceNode};
use crate::plan::{RoleSpec, Variant};

/// One instance's place.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    /// The Slurm node it runs on (slurm backend).
    pub node: Option<&'a SlurmNode>,
    /// The address it binds to and is reached at.
    pub host: &'a str,
    /// CUDA indices it holds (local CUDA only).
    pub gpus: Vec<u32>,
    /// Cores it is pinned to (local CPU build only).
    pub cpus: Vec<u32>,
}

/// Hands out places for the instances of one variant, in order.
pub struct Placer<'a> {
    target: &'a Target<'a>,
    gpu_pool: std::vec::IntoIter<u32>,
    cpu_pool: std::vec::IntoIter<u32>,
    /// slurm backend: the node of every instance of the variant.
    slurm_nodes: Vec<InstanceNode>,
    /// Every GPU handed out, for the GPU checks before and after the variant.
    pub all_gpus: Vec<u32>,
}

impl<'a> Placer<'a> {
    pub fn new(target: &'a Target<'a>, variant: &Variant) -> anyhow::Result<Self> {
        let slurm_nodes = match &target.slurm {
            Some(s) => {
                let gpus: Vec<Option<u32>> = s.nodes.iter().map(|n| Some(n.gpus)).collect();
                placement::place(&variant.roles, &gpus, s.placement).map_err(|why| {
                    anyhow::anyhow!(
                        "variant {} cannot be placed on the allocation ({}): {why}",
                        variant.id,
                        s.nodes
                            .iter()
                            .map(|n| format!("{} with {} GPUs", n.name, n.gpus))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?
            }
            None => Vec::new(),
        };
        Ok(Placer {
            target,
            gpu_pool: target.gpu_pool.clone().into_iter(),
            cpu_pool: target.cpu_pool.clone().into_iter(),
            slurm_nodes,
            all_gpus: Vec::new(),
        })
    }

    /// The place of instance `index` of `role`.
    pub fn place(&mut self, role: &RoleSpec, index: u32) -> anyhow::Result<Place<'a>> {
        let target = self.target;
        let tp = role.tp;
        let node: Option<&'a SlurmNode> = match &target.slurm {
            Some(s) => {
                let placed = self
                    .slurm_nodes
                    .iter()
                    .find(|p| p.role == role.role && p.index == index)
                    .context("instance left out of the placement")?;
                Some(&s.nodes[placed.node])
            }
            None => None,
        };
        let host = node.map_or(HOST, |n| n.addr.as_str());
        let mut gpus = Vec::new();
        let mut cpus = Vec::new();
        match (target.backend == Backend::Sim, target.accelerator) {
            (true, _) => {}
            // Slurm binds the step's GPUs itself (CUDA_VISIBLE_DEVICES in the step).
            (false, _) if node.is_some() => {}
            (false, Accelerator::Cuda) => {
                for _ in 0..tp {
                    gpus.push(
                        self.gpu_pool
                            .next()
                            .context("not enough GPUs left for this variant")?,
                    );
                }
            }
            (false, Accelerator::Cpu) => {
                for _ in 0..tp * target.cpu_cores_per_instance {
                    cpus.push(
                        self.cpu_pool
                            .next()
                            .context("not enough CPU cores left for this variant")?,
                    );
                }
            }
        }
        self.all_gpus.extend(&gpus);
        Ok(Place {
            node,
            host,
            gpus,
            cpus,
        })
    }
}
