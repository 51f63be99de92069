//! Policy text: a prefix list (one CIDR a line) must never panic to parse; every
//! parsed prefix prints and reparses to itself, contains its own network, and a
//! policy built from the list finds each prefix (or a longer one) for its network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_core::oe::{Cidr, Group, Policy, parse_list};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<Cidr>();
    let Ok(list) = parse_list(text) else {
        return;
    };
    for cidr in &list {
        let printed = cidr.to_string();
        assert_eq!(printed.parse::<Cidr>().as_ref(), Ok(cidr), "{printed}");
        assert!(cidr.contains(cidr.addr()));
    }
    let policy = Policy::new(list.iter().map(|c| (Group::Private, *c)), [])
        .expect("one group cannot conflict with itself");
    for cidr in &list {
        let m = policy.lookup(cidr.addr());
        assert_eq!(m.group, Group::Private);
        let found = m.prefix.expect("listed");
        assert!(found.prefix_len() >= cidr.prefix_len() && found.contains(cidr.addr()));
    }
});
