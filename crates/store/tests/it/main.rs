//! The one integration-test binary of latchkey-store.
//!
//! [`conformance`] holds the behaviour every `Store` must have, written once against
//! `&dyn Store`; [`conformance_suite!`] turns each case into a `#[tokio::test]` for a backend,
//! each on a fresh database: SQLite, PostgreSQL, and latchkey-core's in-memory store (which
//! core's own tests use, so it must behave as the others do). The backend modules add what
//! only they have.
//!
//! PostgreSQL tests need a server with trust auth at 127.0.0.1:5432 (or
//! `LATCHKEY_TEST_POSTGRES_URL`); each test creates its own `lk_test_*` database and drops it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test and benchmark code: a panic is the failure report")]

mod conformance;
mod connect;
mod engine_writes;
mod memory;
mod postgres;
mod sqlite;

use std::sync::Arc;

use latchkey_core::store::Store;

/// A fresh store for one test, and the URL it was opened from (to open a second instance).
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub url: String,
}

/// The URL of an in-memory store: its second instance is the store itself.
pub const MEMORY_URL: &str = "memory:";

impl Ctx {
    /// A second instance on the same database.
    pub async fn second_instance(&self) -> Arc<dyn Store> {
        if self.url == MEMORY_URL {
            return self.store.clone();
        }
        latchkey_store::connect(&self.url).await.expect("second instance")
    }
}

/// One `#[tokio::test]` per conformance case, each on a fresh store from `$fresh()`, an async
/// fn returning `(Ctx, guard)`: the guard cleans up when dropped, after the store.
macro_rules! conformance_suite {
    ($fresh:path) => {
        conformance_suite!(@cases $fresh;
            ping,
            fresh_store_is_empty,
            meta_is_insert_if_absent,
            put_secret_is_an_upsert,
            sealed_bytes_round_trip_exactly,
            delete_secret_removes_every_env,
            list_secrets_is_ordered_by_name_then_env,
            keys_insert_find_and_list,
            insert_key_conflicts_on_an_existing_id,
            delete_key_reports_whether_it_deleted,
            touch_key_records_last_use_without_a_bump,
            connectors_upsert_list_and_delete,
            generation_bumps_on_every_write_and_only_then,
            generation_is_shared_by_instances,
            concurrent_writes_each_bump_once,
            changes_since_holds_only_what_changed,
            a_reader_catching_up_during_concurrent_writes_misses_nothing,
            token_lease_is_exclusive_until_it_runs_out,
            token_commit_is_fenced_by_the_lease_epoch,
            token_lease_is_extended_only_by_its_running_holder,
            token_commit_if_version_refuses_a_stale_writer,
            token_touch_and_delete,
            concurrent_leases_have_one_winner,
            s25_no_rotation_is_lost_to_concurrent_writes_of_the_same_row,
            events_filter_and_order,
            connections_upsert_keeps_the_id,
            deleting_a_connection_deletes_its_tokens,
            connection_values_are_put_with_their_connection_in_one_bumped_write,
            connections_are_counted_by_state,
            flows_are_taken_once,
            refresh_rotation_is_atomic_and_has_one_winner,
            revoking_families_bumps_once_and_only_when_something_changed,
            idempotency_keys_are_claimed_once_answered_and_forgotten,
            concurrent_idempotency_claims_have_one_winner,
            idempotency_answers_are_sealed_values_replaced_only_when_unchanged,
            oauth_clients_are_registered_once,
            auth_grants_are_taken_once,
            refresh_tokens_keep_their_scope_and_audience,
            connector_insert_never_replaces,
            concurrent_connector_creations_have_one_winner,
            sweep_deletes_only_old_rows_of_its_table,
            an_idempotency_claim_forgets_only_its_own_key,
            sweep_is_bounded_by_its_limit,
            concurrent_sweeps_delete_each_row_once,
            oauth_clients_are_kept_only_while_they_have_not_lapsed,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (ctx, guard) = $fresh().await;
                crate::conformance::$case(&ctx).await;
                drop(ctx);
                drop(guard);
            }
        )*
    };
}

pub(crate) use conformance_suite;
