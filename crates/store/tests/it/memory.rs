//! The conformance suite on latchkey-core's in-memory store (`store::memory`), which core's
//! lifecycle tests use: it passes the same cases as the SQL stores.

use std::sync::Arc;

use latchkey_core::store::memory::MemoryStore;

use crate::{Ctx, MEMORY_URL, conformance_suite};

/// A fresh store; the guard is a handle on it (nothing to clean up: it goes with the last).
async fn fresh() -> (Ctx, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (Ctx { store: store.clone(), url: MEMORY_URL.to_owned() }, store)
}

conformance_suite!(fresh);
