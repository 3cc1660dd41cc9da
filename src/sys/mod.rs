//! The only home of `unsafe` and libc in netshim: network namespace handles, the thread that
//! enters a namespace to open a socket there, a thin synchronous rtnetlink layer, and the
//! collection loop's kernel timer.

pub mod alarm;
pub mod limits;
pub mod memory;
pub mod mib;
pub(crate) mod mounts;
pub mod netlink;
pub(crate) mod netns;
