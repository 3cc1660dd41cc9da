//! netshim: a node agent that maps every pod's network interfaces to their host-side peers and
//! publishes pod-perspective counters through collector-style pipelines
//! (receivers → resolvers → exporters).

pub(crate) mod backoff;
pub mod component;
pub mod config;
pub mod dns;
pub mod exporters;
pub(crate) mod extensions;
pub mod health;
pub mod kube_api;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod receivers;
pub mod resolvers;
pub mod self_metrics;
// The one home of unsafe code and libc calls: each block has its own `// SAFETY:` comment.
#[allow(unsafe_code)]
pub mod sys;
pub mod telemetry;
