//! SkyDNS record JSON and the name <-> key mapping: any value either parses or is an error,
//! a parsed record written back parses to the same record, and a name with a key maps back to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lodestar::{Prefix, Service};

fuzz_target!(|data: &[u8]| {
    if let Ok(svc) = Service::parse(data) {
        let again = Service::parse(svc.to_json().as_bytes()).expect("what we write parses");
        assert_eq!(again, svc, "a round trip keeps the record");
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let prefix = Prefix::new("/skydns").unwrap();
        if let Ok(key) = prefix.key_for_name(name) {
            let back = prefix
                .name_for_key(&key)
                .expect("our own key maps back to a name");
            assert_eq!(
                back.trim_end_matches('.').to_ascii_lowercase(),
                name.trim_end_matches('.').to_ascii_lowercase(),
                "{key}"
            );
        }
    }
});
