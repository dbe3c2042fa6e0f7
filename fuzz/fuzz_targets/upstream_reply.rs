//! An upstream's reply as the forwarder and the answer cache see it: the TTL fields a kept
//! answer is aged at lie inside the message, on records' TTLs; how long it may be cached is
//! decided without a panic, whatever the bytes.
#![no_main]

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use server::proto::wire::ttl_offsets;
use server::upstream::cache_ttl;

fuzz_target!(|data: &[u8]| {
    if let Some(offsets) = ttl_offsets(data) {
        for at in offsets {
            assert!(
                usize::from(at) + 4 <= data.len(),
                "a TTL field inside the message"
            );
        }
    }
    if let Ok(m) = Message::from_vec(data) {
        let _ = cache_ttl(&m);
        if let Ok(bytes) = m.to_vec() {
            // What hickory writes, we can age.
            assert!(ttl_offsets(&bytes).is_some(), "{m:?}");
        }
    }
});
