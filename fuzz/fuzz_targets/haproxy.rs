#![no_main]
//! Fuzz target: the PROXY protocol header parsers must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tern_server::haproxy::parse_v1(data);
    if data.len() >= 2 {
        let _ = tern_server::haproxy::parse_v2(data[0], data[1], &data[2..]);
    }
});
