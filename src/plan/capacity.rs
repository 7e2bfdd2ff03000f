//! How many GPUs (or CPU cores) the target offers, discovered or declared.

use serde::Serialize;

use crate::manifest::{Accelerator, Backend, Gpus, Target};

/// GPUs a `sim` target offers when `gpus = "auto"`: one virtual 8-GPU node.
pub const SIM_AUTO_GPUS: u32 = 8;

/// What the target can hold, and where that number came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capacity {
    /// Accelerator slots (GPUs, or instance slots on the CPU build). `None`: unknown here.
    pub gpus: Option<u32>,
    /// CPU cores vbench may pin instances to (cpu accelerator only).
    pub cpu_cores: Option<u32>,
    /// Human explanation, e.g. `8 GPUs from nvidia-smi` or `target.gpus = [0, 1]`.
    pub source: String,
    /// GPUs the manifest names (`target.gpus`, local CUDA) that nvidia-smi does not list on
    /// this host, with what it lists: an instance placed on one cannot start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absent: Option<AbsentGpus>,
}

/// GPUs named by the manifest but not on this host.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AbsentGpus {
    pub named: Vec<u32>,
    pub host_lists: Vec<u32>,
}

impl AbsentGpus {
    /// What the user is told (by `plan` and `apply`).
    pub fn warning(&self) -> String {
        let list = |l: &[u32]| l.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        format!(
            "target.gpus names GPU {}, which nvidia-smi does not list on this host (it lists {}): \
             an instance placed there cannot start",
            list(&self.named),
            if self.host_lists.is_empty() {
                "none".to_owned()
            } else {
                format!("GPU {}", list(&self.host_lists))
            }
        )
    }
}

/// Finds the GPUs of this host; behind a trait so the planner's tests need no GPU.
pub trait GpuDiscovery {
    /// Indices of the visible GPUs, or why they could not be listed.
    fn gpu_indices(&self) -> Result<Vec<u32>, String>;
}

/// Capacity of `target` on this host, asking `gpus` for the GPUs when the manifest leaves
/// them to discovery (`exec::gpus::NvidiaSmiProbe` asks nvidia-smi).
pub fn discover(target: &Target, gpus: &dyn GpuDiscovery) -> Capacity {
    discover_with(target, gpus, host_cores())
}

fn host_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

pub fn discover_with(target: &Target, gpus: &dyn GpuDiscovery, host_cores: u32) -> Capacity {
    if target.accelerator == Accelerator::Cpu && target.backend != Backend::Sim {
        let (cores, source) = match &target.cpus {
            Some(list) => (
                list.len() as u32,
                format!("target.cpus lists {} cores", list.len()),
            ),
            None => (host_cores, format!("{host_cores} CPU cores on this host")),
        };
        let slots = cores / target.cpu_cores_per_instance.max(1);
        return Capacity {
            absent: None,
            gpus: Some(slots),
            cpu_cores: Some(cores),
            source: format!(
                "{source}, {} per instance: {slots} instance slots",
                target.cpu_cores_per_instance
            ),
        };
    }
    let (count, source) = match (&target.gpus, target.backend) {
        (Gpus::Count(n), _) => (Some(*n), format!("target.gpus = {n}")),
        (Gpus::List(l), _) => (
            Some(l.len() as u32),
            format!("target.gpus lists {} GPUs", l.len()),
        ),
        (Gpus::Auto, Backend::Sim) => (
            Some(SIM_AUTO_GPUS),
            format!("simulated node of {SIM_AUTO_GPUS} GPUs"),
        ),
        (Gpus::Auto, Backend::Slurm) => match &target.slurm {
            Some(s) if s.gpus_per_node.is_some() => {
                let n = s.nodes * s.gpus_per_node.unwrap_or(0);
                (
                    Some(n),
                    format!(
                        "slurm: {} nodes x {} GPUs",
                        s.nodes,
                        s.gpus_per_node.unwrap_or(0)
                    ),
                )
            }
            _ => (
                None,
                "slurm allocation size unknown until allocated (set target.slurm.gpus_per_node)"
                    .into(),
            ),
        },
        (Gpus::Auto, Backend::Local) => match gpus.gpu_indices() {
            Ok(list) => (
                Some(list.len() as u32),
                format!("{} GPUs from nvidia-smi", list.len()),
            ),
            Err(why) => (None, format!("not checked: {why}")),
        },
    };
    Capacity {
        gpus: count,
        cpu_cores: None,
        source,
        absent: absent_gpus(target, gpus),
    }
}

/// The GPUs a local CUDA target names that this host does not have (`None` when it has them
/// all, or cannot be asked: no nvidia-smi is not a verdict).
fn absent_gpus(target: &Target, gpus: &dyn GpuDiscovery) -> Option<AbsentGpus> {
    if target.backend != Backend::Local || target.accelerator != Accelerator::Cuda {
        return None;
    }
    let named: Vec<u32> = match &target.gpus {
        Gpus::List(l) => l.clone(),
        Gpus::Count(n) => (0..*n).collect(),
        Gpus::Auto => return None,
    };
    let host = gpus.gpu_indices().ok()?;
    let absent: Vec<u32> = named.into_iter().filter(|g| !host.contains(g)).collect();
    (!absent.is_empty()).then_some(AbsentGpus {
        named: absent,
        host_lists: host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Result<Vec<u32>, String>);
    impl GpuDiscovery for Fake {
        fn gpu_indices(&self) -> Result<Vec<u32>, String> {
            self.0.clone()
        }
    }

    #[test]
    fn auto_uses_discovery_and_admits_when_it_fails() {
        let t = Target::default();
        let c = discover_with(&t, &Fake(Ok(vec![0, 1, 2, 3])), 2);
        assert_eq!(c.gpus, Some(4));
        let c = discover_with(&t, &Fake(Err("nvidia-smi could not run".into())), 2);
        assert_eq!(c.gpus, None);
        assert!(c.source.contains("not checked"));
    }

    #[test]
    fn named_gpus_this_host_lacks_are_said_and_unknown_is_not_a_verdict() {
        let t = Target {
            backend: Backend::Local,
            accelerator: Accelerator::Cuda,
            gpus: Gpus::List(vec![0, 1]),
            ..Target::default()
        };
        let c = discover_with(&t, &Fake(Ok(vec![0])), 2);
        assert_eq!(c.gpus, Some(2), "the manifest's word stands");
        assert_eq!(
            c.absent.unwrap().warning(),
            "target.gpus names GPU 1, which nvidia-smi does not list on this host (it lists \
             GPU 0): an instance placed there cannot start"
        );
        let none = discover_with(&t, &Fake(Ok(vec![])), 2).absent.unwrap();
        assert!(
            none.warning().contains("GPU 0, 1, which") && none.warning().contains("lists none")
        );
        assert_eq!(discover_with(&t, &Fake(Ok(vec![0, 1, 2])), 2).absent, None);
        assert_eq!(
            discover_with(&t, &Fake(Err("no nvidia-smi".into())), 2).absent,
            None
        );
        let count = Target {
            gpus: Gpus::Count(3),
            ..t.clone()
        };
        assert_eq!(
            discover_with(&count, &Fake(Ok(vec![0, 1])), 2)
                .absent
                .unwrap()
                .named,
            [2]
        );
        // The simulator and Slurm nodes are not this host's GPUs.
        let sim = Target {
            backend: Backend::Sim,
            ..t.clone()
        };
        assert_eq!(discover_with(&sim, &Fake(Ok(vec![])), 2).absent, None);
    }

    #[test]
    fn declared_and_cpu_capacities() {
        let t = Target {
            gpus: Gpus::List(vec![2, 3]),
            ..Target::default()
        };
        assert_eq!(discover_with(&t, &Fake(Ok(vec![])), 2).gpus, Some(2));
        let t = Target {
            accelerator: Accelerator::Cpu,
            cpu_cores_per_instance: 1,
            ..Target::default()
        };
        let c = discover_with(&t, &Fake(Ok(vec![])), 2);
        assert_eq!((c.gpus, c.cpu_cores), (Some(2), Some(2)));
    }
}
