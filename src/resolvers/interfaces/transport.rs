//! Each pod namespace's TCP and UDP counters, as the resolver keeps them between cycles: the
//! files they are read from (opened inside the namespace with its socket), the last values
//! read, and when.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::model::TransportCounters;
use crate::sys::mib::{MibFiles, TransportStats};

/// A namespace's TCP and UDP counters: the files they are read from, the last values read.
pub(super) enum Transport {
    /// Not collected (turned off, or the files could not be opened or read: logged once).
    Off,
    On {
        files: MibFiles,
        last: Option<Arc<TransportCounters>>,
        read_at: Option<Instant>,
    },
}

impl Transport {
    /// Counters to be read from `files`, first in the next cycle.
    pub(super) fn from_files(files: MibFiles) -> Self {
        Transport::On {
            files,
            last: None,
            read_at: None,
        }
    }

    pub(super) fn last(&self) -> Option<Arc<TransportCounters>> {
        match self {
            Transport::On { last, .. } => last.clone(),
            Transport::Off => None,
        }
    }

    /// Reads the counters again when `interval` has passed since the last read (or there was
    /// none). A failed read turns them off for this namespace, with one log line: the pod is
    /// reported without them from then on.
    pub(super) fn refresh(
        &mut self,
        now: Instant,
        interval: Duration,
        buf: &mut Vec<u8>,
        inode: u64,
    ) {
        let Transport::On {
            files,
            last,
            read_at,
        } = self
        else {
            return;
        };
        if read_at.is_some_and(|at| now.duration_since(at) < interval) {
            return;
        }
        match files.read(buf) {
            Ok(stats) => {
                *last = Some(Arc::new(transport_counters(stats)));
                *read_at = Some(now);
            }
            Err(e) => {
                warn!(inode, error = %e, "cannot read the namespace's TCP/UDP counters; reported without them");
                *self = Transport::Off;
            }
        }
    }
}

/// The model's names for the kernel's counters.
fn transport_counters(s: TransportStats) -> TransportCounters {
    TransportCounters {
        tcp_active_opens: s.tcp_active_opens,
        tcp_passive_opens: s.tcp_passive_opens,
        tcp_failed_connection_attempts: s.tcp_attempt_fails,
        tcp_established_resets: s.tcp_estab_resets,
        tcp_established_connections: s.tcp_curr_estab,
        tcp_segments_received: s.tcp_in_segs,
        tcp_segments_sent: s.tcp_out_segs,
        tcp_retransmitted_segments: s.tcp_retrans_segs,
        tcp_receive_errors: s.tcp_in_errs,
        tcp_resets_sent: s.tcp_out_rsts,
        tcp_listen_overflows: s.tcp_listen_overflows,
        tcp_listen_drops: s.tcp_listen_drops,
        tcp_retransmission_timeouts: s.tcp_timeouts,
        udp_datagrams_received: s.udp_in_datagrams,
        udp_datagrams_sent: s.udp_out_datagrams,
        udp_no_port_datagrams: s.udp_no_ports,
        udp_receive_errors: s.udp_in_errors,
        udp_receive_buffer_errors: s.udp_rcvbuf_errors,
        udp_send_buffer_errors: s.udp_sndbuf_errors,
    }
}
