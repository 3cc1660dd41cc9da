//! The `interfaces` resolver, netshim's core: every interface inside each pod's network
//! namespace, its host-side peer, and its counters from the pod's point of view.
//!
//! The method (design.md § Interface mapping), all of it from each pod's side, so the kernel's
//! work per pod does not grow with the number of pods:
//! 1. inside each pod namespace, a netlink socket opened there once (on a dedicated thread) and
//!    kept across cycles dumps links with `IFLA_STATS64` and addresses; a veth's or netkit's
//!    entry gives its other end's index (`IFLA_LINK`, omitted by the kernel when equal to its
//!    own) and the id the pod gives the other end's namespace (`IFLA_LINK_NETNSID`);
//! 2. the id the pod gives the host's namespace is asked once on that socket, by fd
//!    (`RTM_GETNSID` with `NETNSA_FD` = the agent's own namespace): a lookup in the pod's own
//!    tiny id table, never in the host's, which holds one id per pod;
//! 3. a paired interface whose other end's namespace has that id has its peer in the host at
//!    that index, named with `SIOCGIFNAME` (by index, O(1)); the host's links are never dumped.

mod resolve;
mod transport;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::model::Batch;
use crate::resolvers::ResolverFactory;

use super::{Resolver, ResolverError, StartContext};
pub use resolve::InterfaceMapper;

pub const TYPE: &str = "interfaces";

/// Settings of the `interfaces` resolver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Also report each namespace's loopback interface. Default: false (its traffic never
    /// leaves the pod).
    pub include_loopback: bool,
    /// Each pod namespace's TCP and UDP counters.
    pub transport: TransportConfig,
}

/// The TCP and UDP counters of each pod namespace (`/proc/net/snmp` and `/proc/net/netstat` as
/// the pod sees them), read from files opened inside the namespace once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Default: true.
    pub enabled: bool,
    /// How often each namespace's counters are read again; the cycles in between publish the
    /// last values read. One read costs the kernel 10-15 times a cycle's stats request (it
    /// prints both files whole: about 60 µs a pod, measured), so they are read less often than
    /// the interface counters: every 60 s they add about a tenth to a steady cycle's CPU at
    /// 1-second cycles, every 30 s a fifth to a third (docs/benchmarks.md). A new pod's are
    /// read in its first cycle. Default: 60s; at least 1s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            enabled: true,
            interval: Duration::from_secs(60),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.transport.interval < Duration::from_secs(1) {
            problems.push(format!(
                "transport.interval: {} is below the minimum of 1s",
                humantime::format_duration(self.transport.interval)
            ));
        }
        problems
    }
}

pub const FACTORY: ResolverFactory = Factory::new::<Config>(
    TYPE,
    "pod interfaces, host peers and pod-side counters over netlink",
);

impl ComponentConfig for Config {
    type Component = dyn Resolver;

    fn build(self, _: &BuildSite<'_>) -> Result<Box<dyn Resolver>, ConfigErrors> {
        Ok(Box::new(InterfacesResolver::new(self)))
    }
}

pub struct InterfacesResolver {
    mapper: Mutex<InterfaceMapper>,
}

impl InterfacesResolver {
    pub fn new(config: Config) -> Self {
        InterfacesResolver {
            mapper: Mutex::new(InterfaceMapper::new(config)),
        }
    }
}

#[async_trait]
impl Resolver for InterfacesResolver {
    async fn start(&self, ctx: StartContext) -> Result<(), ResolverError> {
        if ctx.one_shot {
            // A poisoned lock: see `resolve`.
            let mut mapper = self.mapper.lock().unwrap_or_else(|e| e.into_inner());
            mapper.set_one_shot();
        }
        Ok(())
    }

    /// Maps on the calling thread: the collection thread, where blocking on netlink is fine
    /// (see `Resolver::resolve`).
    async fn resolve(&self, batch: &mut Batch) -> Result<(), ResolverError> {
        // A poisoned lock means an earlier cycle panicked mid-update; the mapper's state is a
        // cache that the next cycle rebuilds as needed.
        let mut mapper = self.mapper.lock().unwrap_or_else(|e| e.into_inner());
        mapper.resolve(batch)
    }
}
