//! Ports for instances, proxies and NIXL side channels: on this host, free ones the OS
//! confirms; on a Slurm node, which vbench cannot ask, ones from the manifest's range that
//! nothing else of this run holds there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;

use anyhow::{bail, Context};

use super::flock::{Attempt, Flock};

/// Hands out ports that were free when asked and never the same one twice in a run (on this
/// host, or on one node).
#[derive(Debug, Default)]
pub struct PortAllocator {
    given: BTreeSet<u16>,
    /// Deterministic mode for snapshot tests: hand out consecutive ports from here, unchecked.
    sequential: Option<u16>,
    /// Slurm nodes: the range ports come from, and what each node has been given.
    node_range: Option<(u16, u16)>,
    node_given: BTreeMap<String, BTreeSet<u16>>,
    /// Lock files that keep the blocks given on this host from another vbench here, held
    /// until the allocator is dropped at the run's end ([`claim`]).
    claims: Vec<Flock>,
}

impl PortAllocator {
    /// Consecutive ports from `start` without asking the OS (for tests of rendered commands).
    pub fn sequential(start: u16) -> Self {
        PortAllocator {
            sequential: Some(start),
            ..PortAllocator::default()
        }
    }

    /// Ports on Slurm nodes come from `[first, last]` (`target.slurm.port_range`).
    pub fn with_node_range(mut self, [first, last]: [u16; 2]) -> Self {
        self.node_range = Some((first, last));
        self
    }

    /// A port for a process on `node` (a Slurm node's name), or on this host when `None`.
    pub fn any_on(&mut self, node: Option<&str>) -> anyhow::Result<u16> {
        match node {
            None => self.any(),
            Some(node) => {
                let (first, _) = self.range()?;
                self.block_on_node(node, first, 1)
            }
        }
    }

    /// [`Self::block`] on `node`, or on this host when `None`.
    pub fn block_on(&mut self, node: Option<&str>, from: u16, len: u16) -> anyhow::Result<u16> {
        match node {
            None => self.block(from, len),
            Some(node) => self.block_on_node(node, from, len),
        }
    }

    fn range(&self) -> anyhow::Result<(u16, u16)> {
        self.node_range
            .ok_or_else(|| anyhow::anyhow!("no port range for Slurm nodes was given"))
    }

    /// `len` consecutive ports at or above `from` that `node` has not been given; HTTP ports
    /// (asked from the range's start) must end inside the range.
    fn block_on_node(&mut self, node: &str, from: u16, len: u16) -> anyhow::Result<u16> {
        let (first, last) = self.range()?;
        let given = self.node_given.entry(node.to_owned()).or_default();
        // This host may be one of the nodes (the run driven from the first node): what it
        // was given is kept off every node too.
        let here = &self.given;
        let limit = if from >= first {
            u32::from(last)
        } else {
            65535
        };
        let mut base = u32::from(from.max(1024));
        while base + u32::from(len) - 1 <= limit {
            let block = base as u16..(base + u32::from(len)) as u16;
            match block
                .clone()
                .find(|p| given.contains(p) || here.contains(p))
            {
                Some(taken) => base = u32::from(taken) + 1,
                None => {
                    given.extend(block);
                    return Ok(base as u16);
                }
            }
        }
        bail!(
            "node {node}: no {len} free port(s) left at or above {from} (up to {limit}); \
             widen target.slurm.port_range"
        )
    }

    /// A port of this host that the OS reports free now, from [`LOCAL_PORTS`].
    pub fn any(&mut self) -> anyhow::Result<u16> {
        if let Some(next) = self.sequential.as_mut() {
            *next += 1;
            return Ok(*next - 1);
        }
        let (first, last) = local_ports();
        self.free_block(first, 1, last).with_context(|| {
            format!("no free port on 127.0.0.1 from {first} to {last} (the ports vbench uses)")
        })
    }

    /// `len` consecutive free ports starting at or above `from` (a NIXL side-channel block:
    /// one port per TP rank).
    pub fn block(&mut self, from: u16, len: u16) -> anyhow::Result<u16> {
        if self.sequential.is_some() {
            let base = from.max(1024) + self.given.len() as u16;
            self.given.extend(base..base + len);
            return Ok(base);
        }
        self.free_block(from, len, u16::MAX)
            .with_context(|| format!("no block of {len} free ports at or above {from}"))
    }

    /// The first block of `len` ports from `from` to `last` that is free to the OS, not yet
    /// given in this run (here or to a Slurm node), and claimed against other runs here.
    fn free_block(&mut self, from: u16, len: u16, last: u16) -> Option<u16> {
        let mut base = from.max(1024);
        while u32::from(base) + u32::from(len) - 1 <= u32::from(last) {
            let all_free = (base..base + len).all(|p| {
                !self.given.contains(&p)
                    && !self.node_given.values().any(|g| g.contains(&p))
                    && is_free(p)
            });
            if all_free {
                if let Some(claims) = claim_all(base..base + len) {
                    self.claims.extend(claims);
                    self.given.extend(base..base + len);
                    return Some(base);
                }
            }
            base = base.checked_add(1)?;
        }
        None
    }
}

/// This host's HTTP ports (instances and proxies) come from here: below Linux's ephemeral
/// range (32768 and up), which the OS hands to every outgoing connection and every socket
/// bound to port 0, vLLM's own ZMQ sockets among them. A port the OS picked from there was
/// free when picked, but a proxy binds it only once its instances are healthy, minutes later,
/// and CI saw it taken by then ("Address already in use").
pub const LOCAL_PORTS: (u16, u16) = (20000, 32767);

/// [`LOCAL_PORTS`], ending below this host's ephemeral range where that starts lower.
fn local_ports() -> (u16, u16) {
    let (first, last) = LOCAL_PORTS;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
    match ephemeral_start {
        // Only while that leaves a usable range; otherwise the OS's free check still holds.
        Some(e) if e > first.saturating_add(1000) => (first, last.min(e - 1)),
        _ => (first, last),
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// Claims every port of a block against the other vbench processes on this host, or none
/// (`None`: another one holds one of them). The OS's "free" alone cannot see a block another
/// run has chosen but not bound yet: every run looks for LMCache's side channels from the
/// same base port, and LMCache binds them only as its engine starts.
fn claim_all(ports: std::ops::Range<u16>) -> Option<Vec<Flock>> {
    let mut held = Vec::new();
    for port in ports {
        match claim(port) {
            Claim::Held(file) => held.push(file),
            Claim::Unavailable => {}
            Claim::Taken => return None,
        }
    }
    Some(held)
}

enum Claim {
    /// Ours while this file stays open.
    Held(Flock),
    /// Another process on this host holds it.
    Taken,
    /// The lock file could not be opened (a read-only temp folder): the port is not refused
    /// for that.
    Unavailable,
}

/// An exclusive `flock` on `<temp dir>/vbench-port-<port>.lock`. A file another user made is
/// opened read-only, which still locks, so runs of different users keep apart too.
fn claim(port: u16) -> Claim {
    let path = std::env::temp_dir().join(format!("vbench-port-{port}.lock"));
    match Flock::try_take(&path) {
        Ok(Attempt::Held(lock)) => Claim::Held(lock),
        Ok(Attempt::Taken { .. }) => Claim::Taken,
        Err(_) => Claim::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs on one host (two allocators: each holds its own locks) asking for a block
    /// from the same base get different blocks, though each port is still free to the OS
    /// (nothing binds them here); the first run's end releases its block.
    #[test]
    fn runs_beside_each_other_never_get_the_same_block() {
        let from = 47_311;
        let mut first = PortAllocator::default();
        let mut second = PortAllocator::default();
        let a = first.block(from, 3).unwrap();
        let b = second.block(from, 3).unwrap();
        assert!(b >= a + 3 || a >= b + 3, "{a} and {b} overlap");
        drop(first);
        let mut third = PortAllocator::default();
        assert_eq!(third.block(from, 3).unwrap(), a);
    }

    #[test]
    fn ports_are_distinct_and_blocks_skip_taken_ones() {
        let mut a = PortAllocator::default();
        let p1 = a.any().unwrap();
        let p2 = a.any().unwrap();
        assert_ne!(p1, p2);
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        let base = a.block(taken, 2).unwrap();
        assert!(base > taken, "the held port is skipped");
        let next = a.block(base, 2).unwrap();
        assert!(next >= base + 2, "blocks never overlap");
    }

    /// This host's ports come from below the ephemeral range, and never from what a Slurm
    /// node of the run was given (the host may be that node).
    #[test]
    fn local_ports_avoid_the_ephemeral_range_and_the_nodes_ports() {
        let mut a = PortAllocator::default().with_node_range([20000, 20001]);
        let on_node = [a.any_on(Some("n1")).unwrap(), a.any_on(Some("n1")).unwrap()];
        let (first, last) = local_ports();
        assert!(first == LOCAL_PORTS.0 && last <= LOCAL_PORTS.1 && last > first + 1000);
        for _ in 0..3 {
            let p = a.any().unwrap();
            assert!((first..=last).contains(&p), "{p}");
            assert!(!on_node.contains(&p), "{p} was given to a node");
        }
        // And a node is never given what this host was.
        let mut b = PortAllocator::default().with_node_range([first, last]);
        let here = b.any().unwrap();
        let node = b.block_on(Some("n1"), here, 1).unwrap();
        assert_ne!(node, here);
    }

    #[test]
    fn node_ports_come_from_the_range_once_per_node() {
        let mut a = PortAllocator::default().with_node_range([30000, 30002]);
        assert_eq!(a.any_on(Some("n1")).unwrap(), 30000);
        assert_eq!(a.any_on(Some("n1")).unwrap(), 30001);
        assert_eq!(
            a.any_on(Some("n2")).unwrap(),
            30000,
            "another node, its own ports"
        );
        // Side-channel blocks below the range skip what the node was given.
        assert_eq!(a.block_on(Some("n1"), 5600, 2).unwrap(), 5600);
        assert_eq!(a.block_on(Some("n1"), 5600, 2).unwrap(), 5602);
        assert_eq!(a.block_on(Some("n1"), 29999, 2).unwrap(), 30002);
        let e = a.any_on(Some("n1")).unwrap_err().to_string();
        assert!(e.contains("node n1") && e.contains("port_range"), "{e}");
        assert!(PortAllocator::default().any_on(Some("n1")).is_err());
    }
}
