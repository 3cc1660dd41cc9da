//! A network namespace's TCP and UDP counters: the kernel's SNMP MIB (`/proc/net/snmp`) and its
//! extensions (`/proc/net/netstat`), as a process inside that namespace sees them.
//!
//! Both files are opened once, from inside the namespace (on the setns thread, through
//! `/proc/thread-self/net`, which is the calling *thread's* namespace; `/proc/self/net` would be
//! the main thread's). An open proc-net file stays bound to the namespace it was opened in, so
//! each later read is one `pread` from offset 0 per file, from any thread. Both are
//! `single_open` seq files: one read into a buffer larger than the text returns all of it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The TCP and UDP counters netshim publishes, by their kernel names (see each field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// `Tcp: ActiveOpens`
    pub tcp_active_opens: u64,
    /// `Tcp: PassiveOpens`
    pub tcp_passive_opens: u64,
    /// `Tcp: AttemptFails`
    pub tcp_attempt_fails: u64,
    /// `Tcp: EstabResets`
    pub tcp_estab_resets: u64,
    /// `Tcp: CurrEstab` (a gauge)
    pub tcp_curr_estab: u64,
    /// `Tcp: InSegs`
    pub tcp_in_segs: u64,
    /// `Tcp: OutSegs`
    pub tcp_out_segs: u64,
    /// `Tcp: RetransSegs`
    pub tcp_retrans_segs: u64,
    /// `Tcp: InErrs`
    pub tcp_in_errs: u64,
    /// `Tcp: OutRsts`
    pub tcp_out_rsts: u64,
    /// `TcpExt: ListenOverflows`
    pub tcp_listen_overflows: u64,
    /// `TcpExt: ListenDrops`
    pub tcp_listen_drops: u64,
    /// `TcpExt: TCPTimeouts`
    pub tcp_timeouts: u64,
    /// `Udp: InDatagrams`
    pub udp_in_datagrams: u64,
    /// `Udp: OutDatagrams`
    pub udp_out_datagrams: u64,
    /// `Udp: NoPorts`
    pub udp_no_ports: u64,
    /// `Udp: InErrors`
    pub udp_in_errors: u64,
    /// `Udp: RcvbufErrors`
    pub udp_rcvbuf_errors: u64,
    /// `Udp: SndbufErrors`
    pub udp_sndbuf_errors: u64,
}

/// Why the counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MibError {
    #[error("reading {file}: {source}")]
    Io {
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{file}: {detail}")]
    Malformed { file: &'static str, detail: String },
}

/// The two files, open in one namespace.
#[derive(Debug)]
pub struct MibFiles {
    snmp: File,
    netstat: File,
}

/// Where the calling thread's namespace's files are.
pub const OWN_NET_DIR: &str = "/proc/thread-self/net";

/// Texts larger than this are not expected (netstat is about 4 KiB on 6.x kernels); a read that
/// fills the buffer is retried with a larger one.
const FIRST_BUFFER: usize = 16 << 10;
const LARGEST_BUFFER: usize = 1 << 20;

impl MibFiles {
    /// Opens `snmp` and `netstat` under `dir` (a `/proc/…/net` folder).
    pub fn open_in(dir: &Path) -> io::Result<Self> {
        Ok(MibFiles {
            snmp: File::open(dir.join("snmp"))?,
            netstat: File::open(dir.join("netstat"))?,
        })
    }

    /// Reads both files again from the start and picks the counters out. `buf` is reused across
    /// calls (and namespaces) so that a steady read allocates nothing.
    pub fn read(&self, buf: &mut Vec<u8>) -> Result<TransportStats, MibError> {
        let mut stats = TransportStats::default();
        let text = read_whole(&self.snmp, buf).map_err(|source| MibError::Io {
            file: "snmp",
            source,
        })?;
        pick(text, &mut stats, SNMP_FIELDS, "snmp")?;
        let text = read_whole(&self.netstat, buf).map_err(|source| MibError::Io {
            file: "netstat",
            source,
        })?;
        pick(text, &mut stats, NETSTAT_FIELDS, "netstat")?;
        Ok(stats)
    }
}

/// The counters of two texts as `/proc/net/snmp` and `/proc/net/netstat` print them (for a
/// caller that read them itself: the fuzzer, tests).
pub fn parse_texts(snmp: &[u8], netstat: &[u8]) -> Result<TransportStats, MibError> {
    let mut stats = TransportStats::default();
    pick(snmp, &mut stats, SNMP_FIELDS, "snmp")?;
    pick(netstat, &mut stats, NETSTAT_FIELDS, "netstat")?;
    Ok(stats)
}

fn pick(
    text: &[u8],
    stats: &mut TransportStats,
    fields: &[Field],
    file: &'static str,
) -> Result<(), MibError> {
    let found = parse(text, stats, fields);
    check(found, fields, file)
}

/// All of `file` from offset 0, in one `pread` unless it filled the buffer.
fn read_whole<'b>(file: &File, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
    if buf.len() < FIRST_BUFFER {
        buf.resize(FIRST_BUFFER, 0);
    }
    loop {
        let n = file.read_at(buf, 0)?;
        if n < buf.len() {
            return Ok(&buf[..n]);
        }
        if buf.len() >= LARGEST_BUFFER {
            return Err(io::Error::other(format!(
                "more than {LARGEST_BUFFER} bytes: not a counters file"
            )));
        }
        let larger = buf.len() * 2;
        buf.resize(larger, 0);
    }
}

/// A counter to pick: its section (`Tcp`), its name (`RetransSegs`), where it goes.
type Field = (
    &'static str,
    &'static str,
    fn(&mut TransportStats) -> &mut u64,
);

const SNMP_FIELDS: &[Field] = &[
    ("Tcp", "ActiveOpens", |s| &mut s.tcp_active_opens),
    ("Tcp", "PassiveOpens", |s| &mut s.tcp_passive_opens),
    ("Tcp", "AttemptFails", |s| &mut s.tcp_attempt_fails),
    ("Tcp", "EstabResets", |s| &mut s.tcp_estab_resets),
    ("Tcp", "CurrEstab", |s| &mut s.tcp_curr_estab),
    ("Tcp", "InSegs", |s| &mut s.tcp_in_segs),
    ("Tcp", "OutSegs", |s| &mut s.tcp_out_segs),
    ("Tcp", "RetransSegs", |s| &mut s.tcp_retrans_segs),
    ("Tcp", "InErrs", |s| &mut s.tcp_in_errs),
    ("Tcp", "OutRsts", |s| &mut s.tcp_out_rsts),
    ("Udp", "InDatagrams", |s| &mut s.udp_in_datagrams),
    ("Udp", "OutDatagrams", |s| &mut s.udp_out_datagrams),
    ("Udp", "NoPorts", |s| &mut s.udp_no_ports),
    ("Udp", "InErrors", |s| &mut s.udp_in_errors),
    ("Udp", "RcvbufErrors", |s| &mut s.udp_rcvbuf_errors),
    ("Udp", "SndbufErrors", |s| &mut s.udp_sndbuf_errors),
];

const NETSTAT_FIELDS: &[Field] = &[
    ("TcpExt", "ListenOverflows", |s| &mut s.tcp_listen_overflows),
    ("TcpExt", "ListenDrops", |s| &mut s.tcp_listen_drops),
    ("TcpExt", "TCPTimeouts", |s| &mut s.tcp_timeouts),
];

/// Every field of `fields` must have been found: a kernel without one is not one netshim knows
/// (all of them exist since 2.6).
fn check(found: u64, fields: &[Field], file: &'static str) -> Result<(), MibError> {
    let missing: Vec<String> = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| found & (1 << i) == 0)
        .map(|(_, (section, name, _))| format!("{section}: {name}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MibError::Malformed {
            file,
            detail: format!("no {}", missing.join(", ")),
        })
    }
}

/// Picks `fields` out of a text of line pairs, `Section: Name Name …` then
/// `Section: value value …`. Returns a bit per field found. Unknown sections and names are
/// skipped (kernels add counters); a value that is not a number counts as not found. `CurrEstab`
/// and a few others are printed signed by some kernels; a negative value reads as 0.
fn parse(text: &[u8], stats: &mut TransportStats, fields: &[Field]) -> u64 {
    let mut found = 0u64;
    let mut lines = text.split(|b| *b == b'\n');
    while let Some(names) = lines.next() {
        let Some(values) = lines.next() else { break };
        let Some((section, names)) = split_section(names) else {
            continue;
        };
        let Some((value_section, values)) = split_section(values) else {
            continue;
        };
        if section != value_section {
            continue;
        }
        if !fields.iter().any(|(s, _, _)| s.as_bytes() == section) {
            continue;
        }
        let names = names.split(|b| *b == b' ').filter(|w| !w.is_empty());
        let values = values.split(|b| *b == b' ').filter(|w| !w.is_empty());
        for (name, value) in names.zip(values) {
            let Some((i, (_, _, place))) = fields
                .iter()
                .enumerate()
                .find(|(_, (s, n, _))| s.as_bytes() == section && n.as_bytes() == name)
            else {
                continue;
            };
            if let Some(v) = number(value) {
                *place(stats) = v;
                found |= 1 << i;
            }
        }
    }
    found
}

fn split_section(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|b| *b == b':')?;
    Some((&line[..colon], &line[colon + 1..]))
}

fn number(word: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(word).ok()?;
    if let Some(negative) = text.strip_prefix('-') {
        return negative.parse::<u64>().ok().map(|_| 0);
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
        Tcp: 1 200 120000 -1 11 12 13 14 -3 16 17 18 19 20 0\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
        Udp: 31 32 33 34 35 36 0 0 0\n\
        UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
        UdpLite: 9 9 9 9 9 9 9 9 9\n";

    #[test]
    fn picks_each_counter_by_section_and_name() {
        let mut s = TransportStats::default();
        let found = parse(SNMP.as_bytes(), &mut s, SNMP_FIELDS);
        check(found, SNMP_FIELDS, "snmp").unwrap();
        assert_eq!(s.tcp_active_opens, 11);
        assert_eq!(s.tcp_estab_resets, 14);
        assert_eq!(s.tcp_curr_estab, 0, "a negative gauge reads as 0");
        assert_eq!(s.tcp_retrans_segs, 18);
        assert_eq!(s.tcp_out_rsts, 20);
        // Udp, not UdpLite (same names, other section).
        assert_eq!(s.udp_in_datagrams, 31);
        assert_eq!(s.udp_no_ports, 32);
        assert_eq!(s.udp_sndbuf_errors, 36);
    }

    #[test]
    fn a_missing_counter_is_an_error_that_names_it() {
        let text = "Tcp: ActiveOpens\nTcp: 5\n";
        let mut s = TransportStats::default();
        let found = parse(text.as_bytes(), &mut s, SNMP_FIELDS);
        let e = check(found, SNMP_FIELDS, "snmp").unwrap_err().to_string();
        assert!(
            e.contains("Tcp: PassiveOpens") && e.contains("Udp: NoPorts"),
            "{e}"
        );
        assert!(!e.contains("ActiveOpens,"), "{e}");
    }

    #[test]
    fn garbage_finds_nothing_and_does_not_panic() {
        for text in [
            "",
            "\n\n",
            "Tcp:\n",
            "Tcp: A B\nUdp: 1 2\n",
            "Tcp: CurrEstab\nTcp: x\n",
        ] {
            let mut s = TransportStats::default();
            assert_eq!(parse(text.as_bytes(), &mut s, SNMP_FIELDS), 0, "{text:?}");
        }
    }

    /// The counters as a plain reading of the text gives them, to check the parser against.
    fn plain_reading(text: &str, section: &str, name: &str) -> Option<u64> {
        let lines: Vec<&str> = text.lines().collect();
        lines.chunks(2).find_map(|pair| {
            let (names, values) = (pair[0].strip_prefix(section)?, pair.get(1)?);
            let names = names.strip_prefix(':')?;
            let values = values.strip_prefix(section)?.strip_prefix(':')?;
            let at = names.split_whitespace().position(|n| n == name)?;
            let value = values.split_whitespace().nth(at)?;
            Some(value.parse::<i64>().ok()?.max(0) as u64)
        })
    }

    #[test]
    fn the_kernels_own_files_read_as_a_plain_reading_gives_them() {
        let snmp = std::fs::read_to_string("/proc/self/net/snmp").unwrap();
        let netstat = std::fs::read_to_string("/proc/self/net/netstat").unwrap();
        let mut parsed = TransportStats::default();
        check(
            parse(snmp.as_bytes(), &mut parsed, SNMP_FIELDS),
            SNMP_FIELDS,
            "snmp",
        )
        .unwrap();
        check(
            parse(netstat.as_bytes(), &mut parsed, NETSTAT_FIELDS),
            NETSTAT_FIELDS,
            "netstat",
        )
        .unwrap();
        for (text, fields) in [(&snmp, SNMP_FIELDS), (&netstat, NETSTAT_FIELDS)] {
            for (section, name, place) in fields {
                let expected = plain_reading(text, section, name).unwrap();
                assert_eq!(*place(&mut parsed), expected, "{section}: {name}");
            }
        }
    }

    #[test]
    fn reads_this_namespace_files() {
        // The test process's own namespace: every field is there on any kernel netshim runs on.
        let files = MibFiles::open_in(Path::new("/proc/self/net")).unwrap();
        let mut buf = Vec::new();
        files.read(&mut buf).unwrap();
        files.read(&mut buf).unwrap();
    }
}
