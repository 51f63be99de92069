//! The agent's TOML configuration (`/etc/oemesh/oemesh.toml`): arbitrary text
//! must parse or be refused with a message, never panic, and every refusal must
//! render (the message an operator reads names the key and the fix).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_agent::config::{Config, ParseError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            // Parsing is a pure function of the text.
            assert_eq!(Config::parse(text).ok(), Some(config));
        }
        Err(ParseError::Syntax(message)) => assert!(!message.is_empty()),
        Err(ParseError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "refused without a reason");
            for e in &errors {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(other) => assert!(!other.to_string().is_empty()),
    }
});
