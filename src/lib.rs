//! netshim: a node agent that maps every pod's network interfaces to their host-side peers and
//! publishes pod-perspective counters through collector-style pipelines.

pub mod config;
