//! Picking the TCP/UDP counters out of `/proc/net/snmp` and `/proc/net/netstat` texts: any
//! bytes give counters or an error, never a panic. The input is split at its first NUL into the
//! two texts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netshim::sys::mib::parse_texts;

fuzz_target!(|data: &[u8]| {
    let at = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (snmp, netstat) = data.split_at(at);
    let _ = parse_texts(snmp, netstat.get(1..).unwrap_or(&[]));
});
