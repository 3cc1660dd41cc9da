//! The parts of link and address messages netshim uses, pulled out of the full
//! `netlink-packet-route` messages so the rest of the agent never handles raw attributes.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    LinkAttribute, LinkInfo as NlLinkInfo, LinkLayerType, LinkMessage, Stats64,
};

/// Decodes one netlink frame (header included) as a link message, as the socket layer does for
/// each frame of a dump; `None` for anything else or anything malformed. The fuzz target's entry.
pub fn decode_link_frame(frame: &[u8]) -> Option<LinkInfo> {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage;
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame)
        .ok()?
        .payload
    {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            Some(LinkInfo::from_message(link))
        }
        _ => None,
    }
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
