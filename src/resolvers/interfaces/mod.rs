//! The `interfaces` resolver, netshim's core: every interface inside each pod's network
//! namespace, its host-side peer, and its counters from the pod's point of view.
//!
//! The method (design.md § Interface mapping):
//! 1. one link dump in the host namespace gives each veth/netkit its peer's namespace id
//!    (`IFLA_LINK_NETNSID`) and index (`IFLA_LINK`, omitted by the kernel when equal to its own);
//! 2. each pod namespace's id, as the host sees it, is asked once by fd (`RTM_GETNSID` with
//!    `NETNSA_FD`) — never dumped, since nsid dumps are truncated;
//! 3. inside each pod namespace, a netlink socket opened there once (on a dedicated thread) and
//!    kept across cycles dumps links with `IFLA_STATS64` and addresses;
//! 4. a pod interface's peer is the host link pointing at (pod nsid, pod ifindex) of the same kind.

mod resolve;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::model::Batch;
use crate::resolvers::ResolverFactory;

use super::{Resolver, ResolverError};
pub use resolve::InterfaceMapper;

pub const TYPE: &str = "interfaces";

/// Settings of the `interfaces` resolver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Also report each namespace's loopback interface. Default: false (its traffic never
    /// leaves the pod).
    pub include_loopback: bool,
}

impl Validate for Config {}

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
    mapper: Arc<Mutex<InterfaceMapper>>,
}

impl InterfacesResolver {
    pub fn new(config: Config) -> Self {
        InterfacesResolver {
            mapper: Arc::new(Mutex::new(InterfaceMapper::new(config))),
        }
    }
}

#[async_trait]
impl Resolver for InterfacesResolver {
    async fn resolve(&self, batch: &mut Batch) -> Result<(), ResolverError> {
        let mapper = Arc::clone(&self.mapper);
        let mut owned = std::mem::take(batch);
        // Netlink reads block; they run on tokio's blocking pool, never on an async worker.
        let (owned, result) = tokio::task::spawn_blocking(move || {
            // A poisoned lock means an earlier cycle panicked mid-update; the mapper's state is
            // a cache that the next cycle rebuilds as needed.
            let mut mapper = mapper.lock().unwrap_or_else(|e| e.into_inner());
            let result = mapper.resolve(&mut owned);
            (owned, result)
        })
        .await
        .map_err(|e| ResolverError::Failed(format!("interfaces task failed: {e}")))?;
        *batch = owned;
        result
    }
}
