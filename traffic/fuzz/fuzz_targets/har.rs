//! The HAR reader on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = traffic::har::read(std::path::Path::new("fuzz.har"), data) {
        for item in items.into_iter().flatten() {
            let _ = item.ts_ns();
        }
    }
});
