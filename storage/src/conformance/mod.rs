//! The store port's conformance suite: the contract every backend of [`Store`] keeps,
//! written once and run against each backend (only with the `testkit` feature).
//!
//! A backend provides a [`Backend`]: how to open its store (a fresh one the first time,
//! the same data again after the previous handle was dropped) and how to open that same
//! store with another master key. Its test file then invokes
//! [`conformance_tests!`](crate::conformance_tests), which expands into one
//! `#[tokio::test]` per contract test, named as the test is:
//!
//! ```text
//! // storage/tests/conformance_sled.rs
//! social_studio_storage::conformance_tests!(Sled::new(), raw_records);
//! ```
//!
//! The expression is evaluated once per test, so every test gets a store of its own.
//! The calling crate needs `tokio` (with the `macros`, `rt` and `rt-multi-thread`
//! features) among its dev-dependencies.
//!
//! A backend that can also hand out and overwrite a stored record's bytes implements
//! [`RawRecords`] and adds `, raw_records`: the tests of unreadable records run on it too.
//! What is backend-specific stays with the backend's own tests: files on disk, formats,
//! journals, locks, and the derived records of its own layout (counts, indexes).

use async_trait::async_trait;

use crate::{MasterKey, Store, StoreError};

pub mod raw;
pub mod retention;
pub mod store;

/// What a backend gives the conformance suite.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The backend's store.
    type Store: Store;

    /// Opens the store with the backend's own master key: the first call makes an empty
    /// store, every later call (once the previous handle is dropped) opens the same data
    /// again, as a restart would. Panics, naming the error, if the store cannot open.
    async fn open(&self) -> Self::Store;

    /// Opens the same store with `key` instead of the backend's own master key.
    async fn open_with_key(&self, key: &MasterKey) -> Result<Self::Store, StoreError>;
}

/// A backend that lets the suite read and overwrite the bytes of a stored record: the
/// one way to test records that cannot be read (from a newer release, or damaged) and
/// grants copied under another connection. Its tests run only when the backend's test
/// file asks for them (`conformance_tests!(backend, raw_records)`).
///
/// A record is named as a [`CodecError`](crate::CodecError) names it: its kind
/// (`"connections"`, `"grants"`, `"post_status"`, …) and its key (a connection's
/// [`storage_key`](crate::ConnectionKey::storage_key), a post's id bytes); the bytes are
/// the codec's, sealed where the record is sealed.
pub trait RawRecords: Backend {
    /// The stored bytes of the record `key` of `kind`, if there is one.
    fn raw_get(store: &Self::Store, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `bytes` as the record `key` of `kind`, past every check of the port.
    fn raw_insert(
        store: &Self::Store,
        kind: &str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<(), StoreError>;
}

/// Expands into one `#[tokio::test]` per contract test of the suite, each running
/// against the store of a fresh `$backend` (an expression evaluated once per test, whose
/// type implements [`conformance::Backend`](crate::conformance::Backend)). With
/// `, raw_records` it adds the tests that need
/// [`conformance::RawRecords`](crate::conformance::RawRecords).
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr, raw_records) => {
        $crate::conformance_tests!($backend);
        $crate::conformance_tests!(@on_one_thread $backend;
            raw::two_pen_names_on_one_platform_never_see_each_other,
            raw::an_unreadable_record_is_named_everywhere_and_the_rest_stays_usable,
            raw::erasing_a_pen_name_removes_everything_it_owns_even_unreadable_and_nothing_else,
        );
    };
    ($backend:expr) => {
        $crate::conformance_tests!(@on_one_thread $backend;
            store::every_record_type_round_trips_and_survives_reopen,
            store::counts_follow_every_transition_and_queued_posts_are_exactly_the_queued_ones,
            store::event_pages_and_the_events_of_one_post,
            store::a_wrong_master_key_is_a_typed_error_and_changes_nothing,
            store::oauth_states_are_single_use_and_expire,
            store::a_state_keeps_its_purpose,
            store::a_used_state_stays_used_across_a_restart,
            store::deleting_a_connection_and_its_posts_leaves_no_index_behind,
            store::a_fenced_writer_cannot_write_after_it_lost_the_connection,
            store::a_long_event_history_pages_newest_first_and_erases_cleanly,
            store::a_durable_commit_s_events_can_be_replayed_as_soon_as_it_resolves,
            store::erasing_a_pen_name_removes_its_pending_oauth_states_and_no_one_else_s,
            store::a_batch_replaces_an_idempotency_record_and_the_first_claim_still_wins,
            retention::old_events_go_oldest_first_and_references_stay_true,
            retention::an_event_purge_stops_at_the_first_newer_event,
            retention::old_idempotency_records_are_forgotten_and_newer_ones_kept,
            retention::only_old_finished_posts_are_removed_with_their_index_entries_and_counts,
            retention::large_event_groups_are_purged_over_several_batches,
        );
        $crate::conformance_tests!(@on_two_threads $backend;
            store::events_become_visible_in_sequence_order_under_concurrent_writers,
        );
    };
    (@on_one_thread $backend:expr; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $test() {
                $crate::conformance::$module::$test($backend).await
            }
        )*
    };
    (@on_two_threads $backend:expr; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::conformance::$module::$test($backend).await
            }
        )*
    };
}
