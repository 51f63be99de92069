//! TSIG key files (`tsig-keygen` output, named.conf syntax): parsing arbitrary
//! text must never panic, and a key that parses must survive being written out
//! again and re-read (same name, same secret).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = dnskeys::tsig::parse(text, Path::new("fuzz.key")) else {
        return;
    };
    let again = dnskeys::tsig::parse(&key.to_keyfile(), Path::new("fuzz.key"))
        .expect("a key we wrote parses");
    assert!(again.same_as(&key), "{key:?} -> {again:?}");
});
