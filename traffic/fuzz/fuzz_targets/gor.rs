//! The `.gor` reader on arbitrary bytes: it must never panic, and must make progress (every
//! call either consumes input or ends).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = traffic::gor::GorReader::new(data, std::path::Path::new("fuzz.gor"));
    let mut records = 0usize;
    while let Some(record) = reader.next_record() {
        records += 1;
        assert!(records <= data.len() + 1, "the reader stopped making progress");
        if let Ok(record) = record {
            let _ = traffic::gor::parse_request_head(&record.message);
            let _ = traffic::gor::parse_response_status(&record.message);
        }
    }
    let _ = traffic::gor::dechunk(data);
});
