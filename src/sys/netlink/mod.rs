//! A thin synchronous rtnetlink layer: one socket type that dumps links and addresses and asks
//! for namespace ids, and the decoded forms of what it returns. Messages are built and parsed
//! with `netlink-packet-route`; this layer adds framing, sequence checks, dump-interruption
//! retries, and a decode step that keeps only what netshim uses.

mod decode;
mod socket;
mod watcher;

pub use decode::{AddrInfo, LinkInfo, decode_link_frame};
pub use socket::{NetlinkError, RouteSocket, Watch};
pub use watcher::LinkWatcher;
