//! The reply a device sends for a received push (the journey's `push.ack` template), rendered
//! straight into the connection's output buffer. Per receipt this is the hot path of a
//! broadcast: the scope borrows everything it answers (`msg.id`, `user`, `base_url`,
//! `device.journey`, captured values) instead of copying the captured values into a
//! [`DeviceScope`], and the text goes through one reused per-thread buffer.

use std::cell::RefCell;

use super::script::{DeviceScope, Script};
use super::shard::{ShardCtx, Slot};
use super::wire::{self, Framing};
use crate::scenario::template::Scope;
use crate::scenario::Template;

thread_local! {
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(256));
}

/// The variables an ack can read, borrowed.
struct PushScope<'a> {
    msg_id: &'a str,
    user: &'a str,
    base_url: &'a str,
    journey: &'a str,
    /// `{{device.id}}`'s number (the scope's user id).
    id: u32,
    vars: &'a [(String, String)],
}

impl Scope for PushScope<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        match name {
            "user" => Some(self.user),
            "base_url" => Some(self.base_url),
            "device.journey" => Some(self.journey),
            "msg.id" => Some(self.msg_id),
            _ => super::script::lookup(self.vars, name),
        }
    }
    fn iteration(&self) -> u64 {
        0
    }
    fn user_id(&self) -> u64 {
        u64::from(self.id)
    }
}

/// Renders `ack` for push `msg_id` and frames it into `out`; a template that reads an unset
/// variable sends nothing (as before: the push is still counted).
#[allow(clippy::too_many_arguments)]
pub fn render(
    ack: &Template,
    msg_id: &str,
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    vars: &[(String, String)],
    framing: Framing,
    out: &mut Vec<u8>,
) {
    SCRATCH.with(|scratch| {
        let mut text = scratch.borrow_mut();
        text.clear();
        // `device.index` and `device.id` are numbers the borrowed scope cannot lend: the
        // full device scope answers those templates.
        let rendered = if ack.vars().any(|v| v == "device.index" || v == "device.id") {
            let mut sc = DeviceScope::new(script, slot.index, &slot.user, &ctx.base_url);
            sc.extra = vars.to_vec();
            sc.set("msg.id", msg_id.to_string());
            ack.render_into(&sc, &mut text)
        } else {
            let sc = PushScope {
                msg_id,
                user: &slot.user,
                base_url: &ctx.base_url,
                journey: &script.def.name,
                id: script.plan.id_of(slot.index),
                vars,
            };
            ack.render_into(&sc, &mut text)
        };
        if rendered.is_ok() {
            wire::encode(framing, text.as_bytes(), out);
        }
    });
}
