//! Recorded-traffic readers, transforms, pacing and inspection for `loadgen replay`.
