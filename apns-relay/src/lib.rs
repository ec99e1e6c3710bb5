//! An APNs-compatible relay with idempotent retries, an Apple-only CONNECT proxy and a
//! sender-side router.
