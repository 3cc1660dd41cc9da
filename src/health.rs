//! What each component last reported, for readiness: the agent is ready once every receiver's
//! last scan succeeded (and, with the resolvers that sync from elsewhere, once they have synced).
//! The `health_check` extension serves it; tests read it directly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One component's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    /// The last attempt succeeded.
    pub ready: bool,
    /// Why the last attempt failed, when it did; `None` before the first attempt too.
    pub last_error: Option<String>,
    /// When `ready` last changed.
    pub since: SystemTime,
}

/// Shared by the pipeline (which reports) and whoever asks (the health endpoint, tests).
#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
}

impl Health {
    /// Registers a component that has not reported yet: not ready.
    pub fn register(&self, id: &str) {
        self.lock()
            .entry(id.to_string())
            .or_insert(ComponentHealth {
                ready: false,
                last_error: None,
                since: SystemTime::now(),
            });
    }

    /// Records the outcome of a component's latest attempt. Returns whether its readiness
    /// changed (callers log only changes).
    pub fn report(&self, id: &str, outcome: Result<(), String>) -> bool {
        let mut components = self.lock();
        let ready = outcome.is_ok();
        let entry = components.entry(id.to_string()).or_insert(ComponentHealth {
            ready: !ready, // forces "changed" on the first report
            last_error: None,
            since: SystemTime::now(),
        });
        let changed = entry.ready != ready;
        if changed {
            entry.since = SystemTime::now();
        }
        entry.ready = ready;
        entry.last_error = outcome.err();
        changed
    }

    /// Every registered component is ready.
    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|c| c.ready)
    }

    /// A copy of every component's state, by id.
    pub fn components(&self) -> BTreeMap<String, ComponentHealth> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ComponentHealth>> {
        // A poisoned lock only means a reporter panicked mid-update of a plain map.
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_component_last_succeeded() {
        let h = Health::default();
        assert!(h.is_ready(), "nothing registered");
        h.register("receivers::cri");
        h.register("receivers::netns");
        assert!(!h.is_ready(), "registered, never reported");
        assert!(h.report("receivers::cri", Ok(())));
        assert!(h.report("receivers::netns", Ok(())));
        assert!(h.is_ready());
        assert!(h.report("receivers::cri", Err("socket missing".into())));
        assert!(
            !h.report("receivers::cri", Err("still missing".into())),
            "no change"
        );
        assert!(!h.is_ready());
        let c = &h.components()["receivers::cri"];
        assert_eq!(c.last_error.as_deref(), Some("still missing"));
        assert!(h.report("receivers::cri", Ok(())));
        assert!(h.is_ready());
    }
}
