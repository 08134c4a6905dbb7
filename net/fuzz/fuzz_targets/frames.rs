//! A byte stream cut into frames, each frame decoded as a request: exercises the splitter and
//! its size checks together with the decoders.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use net::frame::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        assert!(frame.len() <= decoder.max_frame_bytes());
        if let Ok(req) = net::parse_request_header(frame) {
            let _ = net::decode_request(&req);
        }
    }
});
