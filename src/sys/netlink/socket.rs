//! The rtnetlink socket and its request/response loop.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use netlink_packet_core::{
    ErrorBuffer, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST, NLMSG_ALIGNTO,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use super::decode::{
    AddrInfo, IF_STATS_MSG_LEN, IFLA_STATS_LINK_64, LinkCounters, LinkInfo, decode_link_frame,
    decode_stats_frame,
};

/// `netlink-packet-core` checks frames against its header length but does not export it.
const NETLINK_HEADER_LEN: usize = std::mem::size_of::<libc::nlmsghdr>();
/// Kernel dump datagrams are at most 32 KiB; twice that leaves room without reallocating.
const INITIAL_BUFFER: usize = 64 * 1024;
/// How often a dump the kernel flags as interrupted (NLM_F_DUMP_INTR: the table changed while it
/// was being read) is retried before the last, possibly inconsistent, result is used.
const DUMP_ATTEMPTS: usize = 3;
/// A reply that does not come within this time means the request is lost; never block forever.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink {op}: the kernel answered: {source}")]
    Kernel {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink {op}: malformed reply: {detail}")]
    Malformed { op: &'static str, detail: String },
}

impl NetlinkError {
    /// The errno behind the failure, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetlinkError::Io { source, .. } | NetlinkError::Kernel { source, .. } => {
                source.raw_os_error()
            }
            NetlinkError::Malformed { .. } => None,
        }
    }
}

/// A NETLINK_ROUTE socket. It answers for the network namespace it was created in, whatever
/// namespace the thread using it is in later.
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
    /// A change notification (or a notification overflow) arrived since the last
    /// [`RouteSocket::take_changed`].
    changed: bool,
}

/// Which change notifications a socket receives (legacy `RTMGRP_*` bits given at bind time, so
/// subscribing costs no extra system call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Nothing,
    /// Links added, removed or changed.
    Links,
    /// Links, and IPv4 and IPv6 addresses.
    LinksAndAddresses,
}

impl Watch {
    fn groups(self) -> u32 {
        use libc::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
        // libc types the bits `c_int`; every one is a small positive value.
        (match self {
            Watch::Nothing => 0,
            Watch::Links => RTMGRP_LINK,
            Watch::LinksAndAddresses => RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
        }) as u32
    }
}

thread_local! {
    /// One receive buffer per thread, shared by every socket used on it: requests are
    /// synchronous, so a thread never reads two answers at once, and a thousand idle pod sockets
    /// cost no buffer memory.
    static RECEIVE_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; INITIAL_BUFFER]);
}

/// Runs `f` with this thread's receive buffer.
fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    RECEIVE_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        // Only possible if a message callback re-entered this layer, which none does; a fresh
        // buffer is still correct, just slower.
        Err(_) => f(&mut vec![0; INITIAL_BUFFER]),
    })
}

impl std::os::fd::AsRawFd for RouteSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    interrupted: bool,
}

impl RouteSocket {
    /// Opens a socket in the calling thread's network namespace. Notifications of `watch` are
    /// never read one by one: any of them only marks the socket as changed (see
    /// [`Self::take_changed`]), whether it arrives while waiting for an answer or is drained by
    /// [`Self::drain_notifications`].
    pub fn open(watch: Watch) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        // Port 0: the kernel picks one. Unconnected, requests go to the kernel.
        socket.bind(&SocketAddr::new(0, watch.groups()))?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(RECEIVE_TIMEOUT))?;
        Ok(RouteSocket {
            socket,
            seq: 0,
            changed: false,
        })
    }

    /// Makes receives return `WouldBlock` instead of waiting (for an event loop).
    pub fn set_non_blocking(&self) -> io::Result<()> {
        self.socket.set_non_blocking(true)
    }

    /// Sets the kernel receive buffer, so that notifications between two cycles fit.
    pub fn set_receive_buffer(&mut self, bytes: usize) -> io::Result<()> {
        self.socket.set_rx_buf_sz(bytes)
    }

    /// Whether a change notification arrived since the last call; clears the mark.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Reads every queued notification without blocking, marking the socket changed if there
    /// was any (or if some were lost to a full buffer).
    pub fn drain_notifications(&mut self) -> Result<(), NetlinkError> {
        with_buffer(|buf| self.drain_into(buf))
    }

    fn drain_into(&mut self, buf: &mut [u8]) -> Result<(), NetlinkError> {
        loop {
            match self
                .socket
                .recv(&mut &mut buf[..], libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            {
                Ok(_) => self.changed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.changed = true,
                Err(source) => {
                    return Err(NetlinkError::Io {
                        op: "drain notifications",
                        source,
                    });
                }
            }
        }
    }

    /// Reads every notification queued and says what they were about: the links added,
    /// changed or renamed (index and name) and the links deleted. Nothing is asked of the
    /// kernel: the notifications carry it. `lost` when some were lost (the receive buffer
    /// overflowed, or a datagram was larger than the buffer): then anything may have changed.
    pub fn drain_link_notices(&mut self) -> Result<LinkNotices, NetlinkError> {
        with_buffer(|buf| {
            let mut notices = LinkNotices::default();
            loop {
                match self
                    .socket
                    .recv(&mut &mut buf[..], libc::MSG_DONTWAIT | libc::MSG_TRUNC)
                {
                    Ok(len) => {
                        self.changed = true;
                        match buf.get(..len) {
                            Some(datagram) => notices.read(datagram),
                            None => notices.lost = true, // truncated: its end is gone
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(notices),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.changed = true;
                        notices.lost = true;
                    }
                    Err(source) => {
                        return Err(NetlinkError::Io {
                            op: "drain notifications",
                            source,
                        });
                    }
                }
            }
        })
    }

    /// The 64-bit counters of every link of the namespace, by index (`RTM_GETSTATS` limited to
    /// `IFLA_STATS_LINK_64`): a small fraction of a full link dump's cost.
    pub fn dump_stats(&mut self) -> Result<Vec<(u32, LinkCounters)>, NetlinkError> {
        const OP: &str = "dump stats";
        let request = stats_request(0);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut out = Vec::new();
            let outcome =
                self.raw_request(OP, libc::RTM_GETSTATS, NLM_F_DUMP, &request, &mut |frame| {
                    match decode_stats_frame(frame) {
                        Some(entry) => out.push(entry),
                        None => tracing::debug!(op = OP, "undecodable stats message skipped"),
                    }
                })?;
            // Links changed while it was read: asked again, as every dump is.
            if !outcome.interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(out);
            }
        }
    }

    /// The 64-bit counters of one link (`RTM_GETSTATS` for its index, not a dump): for a pod
    /// with one or two interfaces, far cheaper for the kernel than a dump, which allocates a
    /// large buffer per request. `None` when the link is gone.
    ///
    /// In a steady cycle this is the only request per pod, so it allocates nothing: the request
    /// is built on the stack and the answer decoded in place ([`decode_stats_frame`]).
    pub fn link_stats(&mut self, index: u32) -> Result<Option<LinkCounters>, NetlinkError> {
        let mut found = None;
        let outcome = self.raw_request(
            "get stats",
            libc::RTM_GETSTATS,
            0,
            &stats_request(index),
            &mut |frame| {
                if let Some((i, counters)) = decode_stats_frame(frame)
                    && i == index
                {
                    found = Some(counters);
                }
            },
        );
        match outcome {
            Ok(_) => Ok(found),
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Every link of the socket's namespace, with its statistics.
    /// Each entry is decoded straight from its frame ([`decode_link_frame`]), reading only the
    /// attributes netshim uses.
    pub fn dump_links(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        const OP: &str = "dump links";
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut out = Vec::new();
            let outcome = self.transact_frames(OP, request.clone(), NLM_F_DUMP, &mut |frame| {
                match decode_link_frame(frame) {
                    Some(link) => out.push(link),
                    None => tracing::debug!(op = OP, "undecodable link message skipped"),
                }
            })?;
            if !outcome.interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(out);
            }
        }
    }

    /// Every address of the socket's namespace.
    pub fn dump_addresses(&mut self) -> Result<Vec<AddrInfo>, NetlinkError> {
        self.dump(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |msg| match msg {
                RouteNetlinkMessage::NewAddress(addr) => AddrInfo::from_message(addr),
                _ => None,
            },
        )
    }

    /// The id this socket's namespace has assigned to the namespace `netns` refers to, or `None`
    /// when it has none. Asked per namespace by fd: a dump of ids is truncated on current kernels.
    pub fn netns_id(&mut self, netns: BorrowedFd<'_>) -> Result<Option<i32>, NetlinkError> {
        const OP: &str = "get netns id";
        let fd = u32::try_from(netns.as_raw_fd()).map_err(|_| NetlinkError::Malformed {
            op: OP,
            detail: "negative fd".into(),
        })?;
        let mut request = NsidMessage::default();
        request.attributes.push(NsidAttribute::Fd(fd));
        let mut id = None;
        self.transact(OP, RouteNetlinkMessage::GetNsId(request), 0, |msg| {
            if let RouteNetlinkMessage::NewNsId(reply) = msg {
                for attr in reply.attributes {
                    if let NsidAttribute::Id(v) = attr {
                        id = Some(v);
                    }
                }
            }
        })?;
        match id {
            Some(v) if v >= 0 => Ok(Some(v)),
            Some(_) => Ok(None), // -1: NETNSA_NSID_NOT_ASSIGNED
            None => Err(NetlinkError::Malformed {
                op: OP,
                detail: "reply without NETNSA_NSID".into(),
            }),
        }
    }

    /// The name of the link with index `index` in the socket's namespace, or `None` when there
    /// is none: `SIOCGIFNAME`, an O(1) lookup in the kernel (`dev_get_by_index`) that takes no
    /// RTNL and, unlike `RTM_GETLINK`, never looks up a namespace id. So a host peer known by
    /// index is named without dumping, or even reading, the host's links.
    pub fn link_name(&self, index: u32) -> Result<Option<String>, NetlinkError> {
        const OP: &str = "link name by index (SIOCGIFNAME)";
        let Ok(ifindex) = libc::c_int::try_from(index) else {
            return Ok(None); // the kernel's indexes are positive ints: no such link
        };
        // SAFETY: `ifreq` is a name array and a union of integers, arrays, sockaddrs and a
        // pointer, for all of which all-zero bytes are a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        request.ifr_ifru.ifru_ifindex = ifindex;
        // glibc types the request `c_ulong`, musl `c_int`: the cast is a no-op on one of them.
        #[allow(clippy::unnecessary_cast)]
        let command = libc::SIOCGIFNAME as libc::Ioctl;
        // SAFETY: the descriptor is this socket's own and stays open for the call; SIOCGIFNAME
        // reads `ifr_ifindex` and writes a NUL-terminated name of at most IFNAMSIZ bytes into
        // `ifr_name` of `request`, which is a live, exclusively borrowed `ifreq` for the call.
        let rc = unsafe {
            libc::ioctl(
                self.socket.as_raw_fd(),
                command,
                &mut request as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            let source = io::Error::last_os_error();
            return match source.raw_os_error() {
                Some(libc::ENODEV) => Ok(None),
                _ => Err(NetlinkError::Io { op: OP, source }),
            };
        }
        let name: Vec<u8> = request
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(Some(String::from_utf8_lossy(&name).into_owned()))
    }

    fn dump<T>(
        &mut self,
        op: &'static str,
        request: RouteNetlinkMessage,
        mut keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut out = Vec::new();
            let outcome = self.transact(op, request.clone(), NLM_F_DUMP, |msg| {
                if let Some(v) = keep(msg) {
                    out.push(v);
                }
            })?;
            if !outcome.interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(out);
            }
        }
    }

    /// Sends one request and feeds every reply message to `on_message` until the kernel says
    /// the answer is complete. A message `netlink-packet-route` cannot decode is skipped; the
    /// rest of the answer is still used.
    fn transact(
        &mut self,
        op: &'static str,
        request: RouteNetlinkMessage,
        extra_flags: u16,
        mut on_message: impl FnMut(RouteNetlinkMessage),
    ) -> Result<Outcome, NetlinkError> {
        self.transact_frames(op, request, extra_flags, &mut decoded(op, &mut on_message))
    }

    /// Sends one request and feeds every reply frame (header included) to `on_frame` until the
    /// kernel says the answer is complete.
    fn transact_frames(
        &mut self,
        op: &'static str,
        request: RouteNetlinkMessage,
        extra_flags: u16,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<Outcome, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(request));
        packet.header.flags = NLM_F_REQUEST | extra_flags;
        packet.header.sequence_number = seq;
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        // `serialize` requires a buffer of exactly `buffer_len()` bytes, which `out` is.
        packet.serialize(&mut out);
        self.send_and_read(op, &out, seq, extra_flags, on_frame)
    }

    /// Sends one serialized request (sequence number `seq`) and feeds every reply frame to
    /// `on_frame` until the kernel says the answer is complete.
    fn send_and_read(
        &mut self,
        op: &'static str,
        request: &[u8],
        seq: u32,
        extra_flags: u16,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<Outcome, NetlinkError> {
        self.socket
            .send(request, 0)
            .map_err(|source| NetlinkError::Io { op, source })?;
        let is_dump = extra_flags & NLM_F_DUMP == NLM_F_DUMP;
        with_buffer(|buf| self.read_answer(buf, op, seq, is_dump, on_frame))
    }

    /// Sends one request of `msg_type` whose body is `body`, built without allocating (the
    /// header on the stack), and feeds every reply frame to `on_frame` as
    /// [`Self::transact_frames`] does.
    fn raw_request(
        &mut self,
        op: &'static str,
        msg_type: u16,
        extra_flags: u16,
        body: &[u8],
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<Outcome, NetlinkError> {
        const MAX_BODY: usize = 32;
        let mut out = [0u8; NETLINK_HEADER_LEN + MAX_BODY];
        let len = NETLINK_HEADER_LEN + body.len();
        if body.len() > MAX_BODY {
            return Err(NetlinkError::Malformed {
                op,
                detail: format!("a {}-byte request body is over {MAX_BODY}", body.len()),
            });
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let flags = NLM_F_REQUEST | extra_flags;
        // `struct nlmsghdr`: length, type, flags, sequence, port (0: the kernel).
        out[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        out[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        out[6..8].copy_from_slice(&flags.to_ne_bytes());
        out[8..12].copy_from_slice(&seq.to_ne_bytes());
        out[NETLINK_HEADER_LEN..len].copy_from_slice(body);
        self.send_and_read(op, &out[..len], seq, extra_flags, on_frame)
    }

    /// Feeds the frames of the answer to request `seq` to `on_frame`, until it is complete.
    fn read_answer(
        &mut self,
        buf: &mut Vec<u8>,
        op: &'static str,
        seq: u32,
        is_dump: bool,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<Outcome, NetlinkError> {
        let mut answer = Answer {
            op,
            seq,
            is_dump,
            outcome: Outcome { interrupted: false },
        };
        loop {
            let n = self.receive(buf, op)?;
            if let Some(outcome) = answer.read(&buf[..n], &mut self.changed, on_frame)? {
                return Ok(outcome);
            }
        }
    }

    /// Receives one datagram into `buf`, growing it when the datagram did not fit (the
    /// truncated datagram is lost, so the request fails and the caller may retry).
    fn receive(&mut self, buf: &mut Vec<u8>, op: &'static str) -> Result<usize, NetlinkError> {
        let n = loop {
            match self.socket.recv(&mut &mut buf[..], libc::MSG_TRUNC) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Notifications were lost to a full buffer; the answer itself keeps coming.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.changed = true,
                Err(source) => return Err(NetlinkError::Io { op, source }),
            }
        };
        if n > buf.len() {
            buf.resize(n.next_power_of_two(), 0);
            return Err(NetlinkError::Malformed {
                op,
                detail: format!("a {n}-byte datagram did not fit the buffer"),
            });
        }
        Ok(n)
    }
}

/// A frame callback that decodes each frame with `netlink-packet-route` and feeds the message to
/// `on_message`; a frame it cannot decode is skipped with a debug line.
fn decoded<'a>(
    op: &'static str,
    on_message: &'a mut dyn FnMut(RouteNetlinkMessage),
) -> impl FnMut(&[u8]) + 'a {
    move |frame| match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(m),
            ..
        }) => on_message(m),
        Ok(_) => {}
        Err(e) => tracing::debug!(op, error = %e, "undecodable netlink message skipped"),
    }
}

/// The answer to one request, as its datagrams arrive.
/// The body of an `RTM_GETSTATS` request for the 64-bit link counters of link `index` (0: of
/// every link, with `NLM_F_DUMP`): `struct if_stats_msg`.
fn stats_request(index: u32) -> [u8; IF_STATS_MSG_LEN] {
    let mut body = [0u8; IF_STATS_MSG_LEN];
    // family (AF_UNSPEC) and the two pads stay 0.
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    body[8..12].copy_from_slice(&(1u32 << (IFLA_STATS_LINK_64 - 1)).to_ne_bytes());
    body
}

struct Answer {
    op: &'static str,
    seq: u32,
    is_dump: bool,
    outcome: Outcome,
}

impl Answer {
    /// Reads the messages of one datagram: the frames of this answer go to `on_frame`, a
    /// notification sets `changed`. Returns the outcome once the answer is complete, `None` when
    /// it continues in the next datagram.
    fn read(
        &mut self,
        datagram: &[u8],
        changed: &mut bool,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<Outcome>, NetlinkError> {
        let op = self.op;
        let mut offset = 0;
        while offset + NETLINK_HEADER_LEN <= datagram.len() {
            let rest = &datagram[offset..];
            let frame = NetlinkBuffer::new_checked(rest).map_err(|_| {
                // The header is in bounds (checked above): only its length field is wrong.
                let len = NetlinkBuffer::new(rest).length();
                NetlinkError::Malformed {
                    op,
                    detail: format!("message length {len} with {} bytes left", rest.len()),
                }
            })?;
            let len = frame.length() as usize;
            let flags = frame.flags();
            let msg_seq = frame.sequence_number();
            offset += len.next_multiple_of(usize::from(NLMSG_ALIGNTO));
            if msg_seq != self.seq {
                // Sequence 0 is a notification; anything else is a late answer to an earlier
                // request that timed out. Neither is part of this answer.
                if msg_seq == 0 {
                    *changed = true;
                }
                continue;
            }
            if flags & NLM_F_DUMP_INTR != 0 {
                self.outcome.interrupted = true;
            }
            match frame.message_type() {
                NLMSG_NOOP => continue,
                NLMSG_DONE => return Ok(Some(self.outcome)),
                NLMSG_OVERRUN => {
                    return Err(NetlinkError::Malformed {
                        op,
                        detail: "overrun".into(),
                    });
                }
                NLMSG_ERROR => {
                    let error = ErrorBuffer::new_checked(frame.payload()).map_err(|_| {
                        NetlinkError::Malformed {
                            op,
                            detail: "short error message".into(),
                        }
                    })?;
                    let Some(code) = error.code() else {
                        return Ok(Some(self.outcome)); // an acknowledgement
                    };
                    return Err(NetlinkError::Kernel {
                        op,
                        source: io::Error::from_raw_os_error(code.get().saturating_neg()),
                    });
                }
                _ => {
                    on_frame(&rest[..len]);
                    if !self.is_dump && flags & NLM_F_MULTIPART == 0 {
                        return Ok(Some(self.outcome));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// What a namespace's link notifications said (see [`RouteSocket::drain_link_notices`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkNotices {
    /// Links added or changed (a rename among them), by index, with their name then.
    pub named: Vec<(u32, String)>,
    /// Links deleted, by index.
    pub deleted: Vec<u32>,
    /// Some notifications were lost.
    pub lost: bool,
}

impl LinkNotices {
    /// Notes the link messages of one datagram (other messages are not about links).
    fn read(&mut self, datagram: &[u8]) {
        let mut rest = datagram;
        while !rest.is_empty() {
            let Ok(frame) = NetlinkBuffer::new_checked(rest) else {
                self.lost = true; // malformed: what it said is unknown
                return;
            };
            let len = frame.length() as usize;
            match frame.message_type() {
                libc::RTM_NEWLINK => match decode_link_frame(&rest[..len]) {
                    Some(link) => self.named.push((link.index, link.name)),
                    None => self.lost = true,
                },
                libc::RTM_DELLINK => match frame.payload().get(4..8) {
                    Some(index) => {
                        let index = i32::from_ne_bytes([index[0], index[1], index[2], index[3]]);
                        self.deleted.push(index as u32);
                    }
                    None => self.lost = true,
                },
                _ => {}
            }
            // Frames are 4-byte aligned within a datagram.
            let next = len.div_ceil(4) * 4;
            rest = rest.get(next..).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One serialized link message: `RTM_NEWLINK` with a name, or `RTM_DELLINK`.
    fn link_frame(index: u32, name: Option<&str>) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        let message = match name {
            Some(name) => {
                link.attributes
                    .push(netlink_packet_route::link::LinkAttribute::IfName(
                        name.into(),
                    ));
                RouteNetlinkMessage::NewLink(link)
            }
            None => RouteNetlinkMessage::DelLink(link),
        };
        let mut message = NetlinkMessage::from(message);
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    #[test]
    fn link_notices_say_what_was_renamed_and_deleted() {
        let mut datagram = Vec::new();
        for frame in [
            link_frame(7, Some("lxcnew")),
            link_frame(9, None),
            link_frame(12, Some("veth12")),
        ] {
            datagram.extend_from_slice(&frame);
            datagram.resize(datagram.len().div_ceil(4) * 4, 0);
        }
        let mut notices = LinkNotices::default();
        notices.read(&datagram);
        assert_eq!(
            notices,
            LinkNotices {
                named: vec![(7, "lxcnew".into()), (12, "veth12".into())],
                deleted: vec![9],
                lost: false,
            }
        );
        // A datagram cut short: what it said is unknown, so everything must be asked again.
        let mut cut = LinkNotices::default();
        cut.read(&datagram[..datagram.len() - 3]);
        assert!(cut.lost);
    }

    #[test]
    fn loopback_is_in_every_namespace() {
        let mut s = RouteSocket::open(Watch::Nothing).expect("open netlink socket");
        let links = s.dump_links().expect("dump links");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo present");
        assert!(lo.is_loopback);
        assert!(lo.stats.is_some());
        let addrs = s.dump_addresses().expect("dump addresses");
        assert!(addrs.iter().any(|a| a.ip.is_loopback()));
    }

    #[test]
    fn the_lean_link_decoder_agrees_with_netlink_packet_route_on_a_real_dump() {
        let mut s = RouteSocket::open(Watch::Nothing).expect("open netlink socket");
        let mut frames = Vec::new();
        s.transact_frames(
            "test dump",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &mut |frame| frames.push(frame.to_vec()),
        )
        .expect("dump links");
        assert!(!frames.is_empty());
        for frame in &frames {
            let full = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)),
                    ..
                }) => LinkInfo::from_message(l),
                other => panic!("not a link message: {other:?}"),
            };
            assert_eq!(decode_link_frame(frame), Some(full));
        }
        // Not a link message, or cut short: nothing, never a panic.
        assert_eq!(decode_link_frame(&frames[0][..20]), None);
        let mut other = frames[0].clone();
        other[4..6].copy_from_slice(&libc::RTM_NEWADDR.to_ne_bytes());
        assert_eq!(decode_link_frame(&other), None);
    }

    #[test]
    fn the_lean_stats_request_and_decoder_agree_with_netlink_packet_route() {
        use netlink_packet_route::stats::{StatsAttribute, StatsFilterMask, StatsMessage};
        // The request built by hand is the one netlink-packet-route would build.
        let mut request = StatsMessage::default();
        request.header.filter_mask = StatsFilterMask::Link64;
        request.header.ifindex = 7;
        let mut packet = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::GetStats(request)),
        );
        packet.finalize();
        let mut emitted = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut emitted);
        assert_eq!(&emitted[NETLINK_HEADER_LEN..], &stats_request(7)[..]);

        let mut s = RouteSocket::open(Watch::Nothing).expect("open netlink socket");
        let mut frames = Vec::new();
        s.raw_request(
            "test dump",
            libc::RTM_GETSTATS,
            NLM_F_DUMP,
            &stats_request(0),
            &mut |frame| frames.push(frame.to_vec()),
        )
        .expect("dump stats");
        assert!(!frames.is_empty());
        for frame in &frames {
            let full = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewStats(m)),
                    ..
                }) => m,
                other => panic!("not a stats message: {other:?}"),
            };
            let counters = full.attributes.iter().find_map(|a| match a {
                StatsAttribute::Link64(c) => Some(LinkCounters::from(c)),
                _ => None,
            });
            let want = counters.map(|c| (full.header.ifindex, c));
            assert_eq!(decode_stats_frame(frame), want);
        }
        // One link asked by index gives that link's entry of the dump (loopback's counters
        // move only with traffic on it, which this test makes none of).
        let lo = s.dump_links().expect("dump links");
        let lo = lo.iter().find(|l| l.is_loopback).expect("lo listed");
        assert!(s.link_stats(lo.index).expect("stats").is_some());
        assert_eq!(s.link_stats(i32::MAX as u32).expect("no error"), None);
        // Cut short, or another message: nothing, never a panic.
        assert_eq!(decode_stats_frame(&frames[0][..20]), None);
        let mut other = frames[0].clone();
        other[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        assert_eq!(decode_stats_frame(&other), None);
    }

    #[test]
    fn own_namespace_has_no_id_relative_to_itself_or_a_valid_one() {
        let mut s = RouteSocket::open(Watch::Nothing).expect("open netlink socket");
        let f = std::fs::File::open("/proc/self/ns/net").expect("open own netns");
        use std::os::fd::AsFd;
        // Either unassigned or a non-negative id; never an error.
        let id = s.netns_id(f.as_fd()).expect("netns id");
        assert!(id.is_none_or(|v| v >= 0));
    }

    #[test]
    fn links_are_named_by_index_and_a_missing_index_is_none() {
        let mut s = RouteSocket::open(Watch::Nothing).expect("open netlink socket");
        let lo = s.dump_links().expect("dump links");
        let lo = lo.iter().find(|l| l.is_loopback).expect("lo listed");
        assert_eq!(s.link_name(lo.index).expect("name"), Some(lo.name.clone()));
        // Indexes are given upwards from 1: none is this high on any real host.
        assert_eq!(s.link_name(i32::MAX as u32).expect("no error"), None);
        assert_eq!(s.link_name(u32::MAX).expect("no error"), None);
    }

    #[test]
    fn a_non_namespace_fd_is_a_kernel_error_not_a_panic() {
        let mut s = RouteSocket::open(Watch::Nothing).expect("open netlink socket");
        let f = std::fs::File::open("/proc/self/status").expect("open a regular file");
        use std::os::fd::AsFd;
        let err = s.netns_id(f.as_fd()).expect_err("not a netns");
        assert!(matches!(err, NetlinkError::Kernel { .. }), "{err}");
    }

    /// Framing of answers, on datagrams made here: message boundaries, sequence numbers,
    /// multi-part dumps, DONE, ERROR and malformed headers.
    mod framing {
        use netlink_packet_core::{DoneMessage, ErrorMessage};

        use super::*;

        const SEQ: u32 = 7;

        fn message(payload: NetlinkPayload<RouteNetlinkMessage>, seq: u32, flags: u16) -> Vec<u8> {
            let mut packet = NetlinkMessage::new(NetlinkHeader::default(), payload);
            packet.finalize();
            packet.header.sequence_number = seq;
            packet.header.flags = flags;
            let mut out = vec![0u8; packet.buffer_len()];
            packet.serialize(&mut out);
            // Padded to the next message, as the kernel lays them out.
            out.resize(out.len().next_multiple_of(4), 0);
            out
        }

        fn link(index: u32, seq: u32, flags: u16) -> Vec<u8> {
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            message(RouteNetlinkMessage::NewLink(msg).into(), seq, flags)
        }

        fn done(seq: u32, flags: u16) -> Vec<u8> {
            message(NetlinkPayload::Done(DoneMessage::default()), seq, flags)
        }

        fn error(code: i32, seq: u32) -> Vec<u8> {
            let mut e = ErrorMessage::default();
            e.code = std::num::NonZeroI32::new(code);
            e.header = vec![0; NETLINK_HEADER_LEN];
            message(NetlinkPayload::Error(e), seq, 0)
        }

        /// A message of this answer written by hand: a header and `body` zero bytes.
        fn raw(kind: u16, flags: u16, body: usize) -> Vec<u8> {
            let len = NETLINK_HEADER_LEN + body;
            let mut out = vec![0u8; len];
            out[..4].copy_from_slice(&(len as u32).to_ne_bytes());
            out[4..6].copy_from_slice(&kind.to_ne_bytes());
            out[6..8].copy_from_slice(&flags.to_ne_bytes());
            out[8..12].copy_from_slice(&SEQ.to_ne_bytes());
            out
        }

        fn answer(is_dump: bool) -> Answer {
            Answer {
                op: "test",
                seq: SEQ,
                is_dump,
                outcome: Outcome { interrupted: false },
            }
        }

        /// Reads `datagrams` in turn until the answer completes or fails; the indexes of the
        /// link messages received, and whether a notification was seen.
        fn read_all(
            answer: &mut Answer,
            datagrams: &[Vec<u8>],
        ) -> (Result<Option<Outcome>, NetlinkError>, Vec<u32>, bool) {
            let mut changed = false;
            let mut links = Vec::new();
            let mut on_message = |m: RouteNetlinkMessage| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    links.push(l.header.index);
                }
            };
            let mut on_frame = decoded("test", &mut on_message);
            let mut result = Ok(None);
            for d in datagrams {
                result = answer.read(d, &mut changed, &mut on_frame);
                if !matches!(result, Ok(None)) {
                    break;
                }
            }
            drop(on_frame);
            (result, links, changed)
        }

        #[test]
        fn a_dump_runs_over_datagrams_until_done_skipping_other_sequences() {
            let first = [
                link(1, 0, 0), // a notification
                link(2, SEQ, NLM_F_MULTIPART),
                link(3, SEQ - 1, NLM_F_MULTIPART), // a late answer to an earlier request
            ]
            .concat();
            let second = [
                link(4, SEQ, NLM_F_MULTIPART),
                done(SEQ, NLM_F_MULTIPART),
                link(5, SEQ, NLM_F_MULTIPART), // after DONE: not read
            ]
            .concat();
            let mut a = answer(true);
            let (outcome, links, changed) = read_all(&mut a, &[first, second]);
            assert_eq!(outcome.unwrap(), Some(Outcome { interrupted: false }));
            assert_eq!(links, [2, 4]);
            assert!(changed);
        }

        #[test]
        fn an_interrupted_dump_is_reported() {
            let datagram = [
                link(1, SEQ, NLM_F_MULTIPART | NLM_F_DUMP_INTR),
                done(SEQ, NLM_F_MULTIPART),
            ]
            .concat();
            let (outcome, links, changed) = read_all(&mut answer(true), &[datagram]);
            assert_eq!(outcome.unwrap(), Some(Outcome { interrupted: true }));
            assert_eq!(links, [1]);
            assert!(!changed);
        }

        #[test]
        fn a_single_reply_ends_the_answer_unless_multipart() {
            let datagram = [link(1, SEQ, 0), link(2, SEQ, 0)].concat();
            let (outcome, links, _) = read_all(&mut answer(false), &[datagram]);
            assert_eq!(outcome.unwrap(), Some(Outcome { interrupted: false }));
            assert_eq!(links, [1]);

            let parts = [link(1, SEQ, NLM_F_MULTIPART), done(SEQ, 0)].concat();
            let (outcome, links, _) = read_all(&mut answer(false), &[parts]);
            assert!(outcome.unwrap().is_some());
            assert_eq!(links, [1]);
        }

        #[test]
        fn errors_and_acknowledgements() {
            let (outcome, _, _) = read_all(&mut answer(false), &[error(-libc::ENODEV, SEQ)]);
            let err = outcome.unwrap_err();
            assert!(matches!(err, NetlinkError::Kernel { .. }), "{err}");
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV));

            let (outcome, _, _) = read_all(&mut answer(false), &[error(0, SEQ)]);
            assert_eq!(outcome.unwrap(), Some(Outcome { interrupted: false }));

            // Another request's error is not this answer's.
            let datagram = [error(-libc::ENODEV, SEQ + 1), link(1, SEQ, 0)].concat();
            let (outcome, links, _) = read_all(&mut answer(false), &[datagram]);
            assert!(outcome.unwrap().is_some());
            assert_eq!(links, [1]);
        }

        #[test]
        fn malformed_frames_fail_the_request() {
            let mut long = link(1, SEQ, 0);
            let real = long.len();
            long[..4].copy_from_slice(&(real as u32 + 100).to_ne_bytes());
            let (outcome, _, _) = read_all(&mut answer(false), &[long]);
            assert_eq!(
                outcome.unwrap_err().to_string(),
                format!(
                    "netlink test: malformed reply: message length {} with {real} bytes left",
                    real + 100
                )
            );

            let mut short = link(1, SEQ, 0);
            short[..4].copy_from_slice(&8u32.to_ne_bytes());
            let (outcome, _, _) = read_all(&mut answer(false), &[short]);
            assert!(
                outcome
                    .unwrap_err()
                    .to_string()
                    .contains("message length 8 with"),
            );

            // An NLMSG_ERROR too short to hold its code.
            let short_error = raw(NLMSG_ERROR, 0, 2);
            let (outcome, _, _) = read_all(&mut answer(false), &[short_error]);
            assert_eq!(
                outcome.unwrap_err().to_string(),
                "netlink test: malformed reply: short error message"
            );

            let overrun = message(NetlinkPayload::Overrun(vec![0; 4]), SEQ, 0);
            let (outcome, _, _) = read_all(&mut answer(true), &[overrun]);
            assert_eq!(
                outcome.unwrap_err().to_string(),
                "netlink test: malformed reply: overrun"
            );
        }

        #[test]
        fn undecodable_messages_and_trailing_bytes_are_skipped() {
            // RTM_NEWLINK whose body is too short for an ifinfomsg.
            let bad = raw(libc::RTM_NEWLINK, NLM_F_MULTIPART, 4);
            let mut datagram = [bad, link(2, SEQ, NLM_F_MULTIPART)].concat();
            // Fewer bytes than a header at the end of a datagram are no message.
            datagram.extend_from_slice(&[0xff; NETLINK_HEADER_LEN - 1]);
            let (outcome, links, _) = read_all(&mut answer(true), &[datagram, done(SEQ, 0)]);
            assert!(outcome.unwrap().is_some());
            assert_eq!(links, [2]);
        }
    }
}
