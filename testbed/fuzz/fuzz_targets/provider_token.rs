//! An `authorization` header from arbitrary bytes, checked by the mock's provider-token
//! verifier: every input gets claims or a reason, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use testbed::apns::{TokenAuth, TokenVerifier};
use testbed::pki::ProviderKey;

fn verifier() -> &'static (TokenVerifier, ProviderKey) {
    static VERIFIER: OnceLock<(TokenVerifier, ProviderKey)> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let key = ProviderKey::generate("KEY1234567").expect("a key");
        let mut auth = TokenAuth::new("TEAM123456", [&key]);
        auth.min_update_interval = None;
        (TokenVerifier::new(&auth), key)
    })
}

fuzz_target!(|data: &[u8]| {
    let (verifier, key) = verifier();
    let _ = verifier.check(Some(data), 1_700_000_000);
    // Also with a validly signed token whose claims come from the input.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(jwt) = key.provider_token(text, 1_700_000_000) {
            let _ = verifier.check(Some(format!("bearer {jwt}").as_bytes()), 1_700_000_000);
        }
    }
});
