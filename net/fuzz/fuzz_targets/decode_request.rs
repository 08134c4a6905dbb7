//! One frame body (size prefix already removed) through header parsing and body decoding.
//! Must never panic or abort; errors must carry the ids of the parsed header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(req) = net::parse_request_header(frame) {
        if let Err(e) = net::decode_request(&req) {
            assert_eq!(e.ids(), Some(req.ids()));
        }
    }
});
