//! Decoding a netlink link or stats message the way the socket layer does for each frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netshim::sys::netlink::{decode_link_frame, decode_stats_frame};

fuzz_target!(|data: &[u8]| {
    if let Some(link) = decode_link_frame(data) {
        let _ = link.peer_index();
    }
    let _ = decode_stats_frame(data);
});
