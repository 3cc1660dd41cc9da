//! The parts of link and address messages netshim uses, pulled out of the full
//! `netlink-packet-route` messages so the rest of the agent never handles raw attributes.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    LinkAttribute, LinkInfo as NlLinkInfo, LinkLayerType, LinkMessage, Stats64,
};

/// Decodes one netlink frame (header included) as a link message, as the socket layer does for
/// each frame of a link dump; `None` for anything else or anything malformed. The fuzz target's
/// entry.
///
/// It reads only the attributes netshim uses, straight from the frame, where a full
/// `netlink-packet-route` parse builds every attribute of the message (a pod's link entry is
/// mostly IPv6 configuration and statistics): that parse was the largest user-space cost of a
/// cold discovery. [`LinkInfo::from_message`] gives the same answer from a parsed message (the
/// tests compare the two on real dumps).
pub fn decode_link_frame(frame: &[u8]) -> Option<LinkInfo> {
    let frame = netlink_packet_core::NetlinkBuffer::new_checked(frame).ok()?;
    if frame.message_type() != libc::RTM_NEWLINK {
        return None;
    }
    decode_link_payload(frame.payload())
}

// Attribute types of `linux/if_link.h` (libc has them only for Android).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_STATS64: u16 = 23;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;

/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
/// `rtnl_link_stats64` begins with rx/tx packets, bytes, errors, dropped (eight u64s).
const STATS64_USED: usize = 8 * 8;

/// The body of an `RTM_NEWLINK` message (after the netlink header).
pub(super) fn decode_link_payload(payload: &[u8]) -> Option<LinkInfo> {
    use netlink_packet_core::NlasIterator;
    let header = payload.get(..IFINFOMSG_LEN)?;
    let kind = u16::from_ne_bytes([header[2], header[3]]);
    let index = i32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
    let mut link = LinkInfo {
        // The kernel's indexes are positive; netlink-packet-route reads the field as u32 too.
        index: index as u32,
        name: String::new(),
        kind: None,
        is_loopback: kind == libc::ARPHRD_LOOPBACK,
        mac: None,
        link: None,
        link_netnsid: None,
        stats: None,
    };
    for nla in NlasIterator::new(&payload[IFINFOMSG_LEN..]) {
        let nla = nla.ok()?;
        let value = nla.value();
        match nla.kind() {
            IFLA_IFNAME => link.name = nl_string(value)?,
            IFLA_ADDRESS => link.mac = Some(value.to_vec()),
            IFLA_LINK => link.link = Some(u32::from_ne_bytes(value.try_into().ok()?)),
            IFLA_LINK_NETNSID => {
                link.link_netnsid = Some(i32::from_ne_bytes(value.try_into().ok()?));
            }
            IFLA_STATS64 => link.stats = Some(stats64(value)?),
            IFLA_LINKINFO => {
                for info in NlasIterator::new(value) {
                    let info = info.ok()?;
                    if info.kind() == IFLA_INFO_KIND {
                        link.kind = Some(nl_string(info.value())?);
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// The counters of an `RTM_NEWSTATS` frame (header included) of a request for
/// `IFLA_STATS_LINK_64`, with the link's index; `None` for anything else or anything malformed.
/// Read straight from the frame: in a steady cycle this is the one answer per pod, and a full
/// `netlink-packet-route` parse of it allocated for every attribute.
pub fn decode_stats_frame(frame: &[u8]) -> Option<(u32, LinkCounters)> {
    use netlink_packet_core::NlasIterator;
    let frame = netlink_packet_core::NetlinkBuffer::new_checked(frame).ok()?;
    if frame.message_type() != libc::RTM_NEWSTATS {
        return None;
    }
    let payload = frame.payload();
    let header = payload.get(..IF_STATS_MSG_LEN)?;
    let index = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
    NlasIterator::new(&payload[IF_STATS_MSG_LEN..])
        .map_while(Result::ok)
        .find(|nla| nla.kind() == IFLA_STATS_LINK_64)
        .and_then(|nla| stats64(nla.value()))
        .map(|counters| (index, counters))
}

/// `struct if_stats_msg`: family, two pads, ifindex, filter_mask.
pub(super) const IF_STATS_MSG_LEN: usize = 12;
/// The `RTM_GETSTATS` attribute (and filter bit `1 << (IFLA_STATS_LINK_64 - 1)`) of the
/// 64-bit link counters.
pub(super) const IFLA_STATS_LINK_64: u16 = 1;

/// The counters netshim reports from a `struct rtnl_link_stats64`.
fn stats64(value: &[u8]) -> Option<LinkCounters> {
    let v = value.get(..STATS64_USED)?;
    let at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(b)
    };
    Some(LinkCounters {
        rx_packets: at(0),
        tx_packets: at(1),
        rx_bytes: at(2),
        tx_bytes: at(3),
        rx_errors: at(4),
        tx_errors: at(5),
        rx_dropped: at(6),
        tx_dropped: at(7),
    })
}

/// A netlink string attribute: UTF-8, without its terminating NUL (as netlink-packet-route
/// reads it; the message is skipped, as there, when it is not UTF-8).
fn nl_string(value: &[u8]) -> Option<String> {
    let value = value.strip_suffix(&[0]).unwrap_or(value);
    String::from_utf8(value.to_vec()).ok()
}

/// One link, as its namespace reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`veth`, `netkit`, `macvlan`, …); `None` for physical devices and `lo`.
    pub kind: Option<String>,
    pub is_loopback: bool,
    pub mac: Option<Vec<u8>>,
    /// `IFLA_LINK`: the peer's (or lower device's) index. The kernel leaves it out when it equals
    /// the link's own index.
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the id, in this namespace, of the namespace `link` lives in.
    pub link_netnsid: Option<i32>,
    /// `IFLA_STATS64`, when the dump included statistics.
    pub stats: Option<LinkCounters>,
}

impl LinkInfo {
    pub fn from_message(msg: LinkMessage) -> Self {
        let mut link = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            is_loopback: msg.header.link_layer_type == LinkLayerType::Loopback,
            mac: None,
            link: None,
            link_netnsid: None,
            stats: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Address(mac) => link.mac = Some(mac),
                LinkAttribute::Link(index) => link.link = Some(index),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
                LinkAttribute::Stats64(s) => link.stats = Some(LinkCounters::from(&s)),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let NlLinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// The index of the other end (or lower device), applying the kernel's rule that
    /// `IFLA_LINK` is omitted when it equals the link's own index. Only meaningful for links that
    /// have a peer in another namespace (`link_netnsid` present).
    pub fn peer_index(&self) -> u32 {
        self.link.unwrap_or(self.index)
    }
}

/// The part of the kernel's `rtnl_link_stats64` netshim reports, as the link counts it
/// (`rx_bytes` is what the link received).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl From<&Stats64> for LinkCounters {
    fn from(s: &Stats64) -> Self {
        LinkCounters {
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            tx_packets: s.tx_packets,
            rx_errors: s.rx_errors,
            tx_errors: s.tx_errors,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
        }
    }
}

/// One address on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
}

impl AddrInfo {
    /// `IFA_LOCAL` is the interface's own address on point-to-point links (where `IFA_ADDRESS`
    /// is the remote end), so it wins when present.
    pub fn from_message(msg: AddressMessage) -> Option<Self> {
        let mut address = None;
        let mut local = None;
        for attr in msg.attributes {
            match attr {
                AddressAttribute::Address(ip) => address = Some(ip),
                AddressAttribute::Local(ip) => local = Some(ip),
                _ => {}
            }
        }
        Some(AddrInfo {
            index: msg.header.index,
            ip: local.or(address)?,
            prefix_len: msg.header.prefix_len,
        })
    }
}
