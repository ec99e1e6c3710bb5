//! What a response must be and what is taken from it: a request step's `expect` (status,
//! body text, body regex) and `capture`, judged by the shared extraction rules
//! ([`super::extract`]).

use super::extract::{contains, Message};
use super::request::Response;
use super::vars::Vars;
use crate::scenario::step::Request;

/// Why a response did not meet the step: the `cause` tag of `http_errors`.
pub fn verify(req: &Request, resp: &Response, vars: &mut Vars) -> Result<(), String> {
    let status_ok = match &req.expect.status {
        Some(set) => set.accepts(resp.status),
        None => (200..400).contains(&resp.status),
    };
    if !status_ok {
        return Err(format!("status {}", resp.status));
    }
    let answer = Message::http(&resp.body, &resp.headers);
    if let Some(needle) = &req.expect.body_contains {
        let needle = needle.render(vars).map_err(|_| "template".to_string())?;
        if !contains(answer.bytes(), needle.as_bytes()) {
            return Err("body".into());
        }
    }
    if let Some(re) = &req.expect.body_matches {
        if !re.is_match(answer.bytes()) {
            return Err("body".into());
        }
    }
    for (name, source) in &req.capture {
        match answer.extract(source) {
            Some(v) => vars.set(name, v.into_owned()),
            None => return Err(format!("capture {name}")),
        }
    }
    Ok(())
}
