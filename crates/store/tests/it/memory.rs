//! The conformance suite on latchkey-core's in-memory store (`store::memory`), which core's
//! lifecycle tests use: it passes the same cases as the SQL stores.

use std::sync::Arc;

use latchkey_core::store::memory::MemoryStore;

use crate::{Ctx, MEMORY_URL, conformance_suite};

async fn fresh() -> (Ctx, ()) {
    (Ctx { store: Arc::new(MemoryStore::new()), url: MEMORY_URL.to_owned() }, ())
}

conformance_suite!(fresh);
