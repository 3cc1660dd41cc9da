//! A thin synchronous rtnetlink layer: one socket type that dumps links and addresses and asks
//! for namespace ids, and the decoded forms of what it returns. The socket is `netlink-sys`'s,
//! headers and frames are read with `netlink-packet-core`, messages are built and parsed with
//! `netlink-packet-route`. This layer adds what those crates leave to their user: the
//! request/answer loop over one reused receive buffer per thread (`netlink-sys` only offers a
//! fresh `Vec` per datagram, and `netlink-proto`'s async connection would be a task per pod
//! namespace), sequence checks, notifications folded into one "changed" mark, dump-interruption
//! retries, and a decode step that keeps only what netshim uses.

mod decode;
mod socket;
mod watcher;

pub use decode::{AddrInfo, LinkCounters, LinkInfo, decode_link_frame, decode_stats_frame};
pub use socket::{LinkNotices, NetlinkError, RouteSocket, Watch};
pub use watcher::LinkWatcher;
