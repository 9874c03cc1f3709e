//! Every message a peer can send, decoded from arbitrary bytes: the handshake's `Hello` and
//! `Welcome` (with the schema it carries), a call's payload, an error reply. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pm_core::schema::Schema;
use pm_core::wire::{FrameBuilder, FrameKind, Hello, Welcome};

fuzz_target!(|data: &[u8]| {
    let _ = rmp_serde::from_slice::<Hello>(data);
    if let Ok(welcome) = rmp_serde::from_slice::<Welcome>(data) {
        if let Some(schema) = welcome.schema.as_deref().and_then(Schema::from_bytes) {
            // A peer's schema is compared with ours and printed in errors.
            let _ = schema.fingerprint();
            let _ = schema.to_string();
            let _ = Schema::build(&[]).difference(&schema);
        }
    }
    if let Some(schema) = Schema::from_bytes(data) {
        let _ = schema.difference(&schema);
    }
    for kind in [FrameKind::Call, FrameKind::ReplyErr, FrameKind::Init] {
        let mut builder = FrameBuilder::new(kind, 1, 1 << 20);
        if builder.raw(data).is_ok() {
            if let Ok(frame) = builder.finish() {
                let _ = pm_core::wire::decode_call(&frame);
                let _ = pm_core::wire::decode_error(&frame);
                let _ = frame.decode::<u64>();
            }
        }
    }
});
