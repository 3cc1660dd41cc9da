//! The only home of `unsafe` and libc in netshim: network namespace handles, the thread that
//! enters a namespace to open a socket there, and a thin synchronous rtnetlink layer.

pub mod limits;
pub mod memory;
pub mod mib;
pub(crate) mod mounts;
pub mod netlink;
pub(crate) mod netns;
