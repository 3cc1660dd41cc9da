//! The CRI verbose-info parser (`PodSandboxStatus(verbose).info["info"]`), for any text.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use netshim::receivers::cri::verbose;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = verbose::parse(&HashMap::from([("info".to_string(), text)]));
});
