//! The conformance suite every [`QueueStore`] backend passes (River's `riverdrivertest`):
//! one test body, run by each backend's own `cargo test` through [`conformance!`] with a
//! constructor of a fresh, migrated store. A new backend is done when the suite passes.
//!
//! Every case drives the store API directly with explicit `now` values (never wall time).
//! [`model`] runs random sequences of operations against a plain reference model and checks
//! ARCHITECTURE.md's invariants after every step.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use vqs::QueueStore;

pub mod concurrency_limit;
pub mod crons;
pub mod dead_letters;
pub mod executions;
pub mod group_pauses;
pub mod group_rate_limits;
pub mod groups;
pub mod leases;
pub mod maintenance;
pub mod messages;
pub mod model;
pub mod outcomes;
pub mod pauses;
pub mod priorities;
pub mod processes;
pub mod progress;
pub mod rate_limits;
pub mod remote_cancels;
pub mod replace;
pub mod schedule_modes;
pub mod schedule_pages;
pub mod schedules;
pub mod stats;
mod support;

/// A fresh, migrated store for one case, and what to keep alive or clean up around it.
pub struct Fresh {
    pub store: Arc<dyn QueueStore>,
    /// Held until the case ends (a temporary directory).
    pub keep: Box<dyn std::any::Any + Send>,
    /// Awaited after the case passes (drop a test database).
    pub teardown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Empties the store for another case, when that is much cheaper than a fresh one (a
    /// PostgreSQL database takes a second to migrate): the model test, which runs many
    /// short cases, then reuses one store. `None`: every case gets a fresh one.
    pub reset: Option<Reset>,
}

/// Empties a store (see [`Fresh::reset`]).
pub type Reset = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl Fresh {
    pub fn new(store: Arc<dyn QueueStore>) -> Fresh {
        Fresh { store, keep: Box::new(()), teardown: None, reset: None }
    }
}

/// The instant every case starts at.
pub fn t0() -> DateTime<Utc> {
    "2026-03-02T09:00:00Z".parse().expect("a valid instant")
}

/// Run one case on a fresh store, then tear it down.
pub async fn run_case<F, Fut, C, CFut>(make: F, case: C)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Fresh>,
    C: FnOnce(Arc<dyn QueueStore>) -> CFut,
    CFut: Future<Output = ()>,
{
    let fresh = make().await;
    case(fresh.store).await;
    if let Some(t) = fresh.teardown {
        t.await;
    }
    drop(fresh.keep);
}

/// Expands to one `#[tokio::test]` per case (so a failure names the case), and the
/// model-based test. `$make` names an `async fn() -> Fresh` in scope.
#[macro_export]
macro_rules! conformance {
    ($make:ident) => {
        $crate::conformance!(@areas $make;
            messages { send_fans_out_to_every_subscribed_group, only_group_delivers_to_one_group,
                       duplicate_key_within_pending_is_reported_not_queued, key_dedups_within_retention_even_once_finished,
                       delay_holds_a_message_back, send_many_keeps_input_order, subscribing_late_sees_earlier_messages,
                       run_now_makes_waiting_deliveries_due, messages_are_found_by_the_key_they_hold_in_any_topic }
            leases { claim_leases_once_until_the_lease_ends, ack_finishes_a_delivery, retry_makes_it_due_after_the_delay,
                     release_spends_no_delivery, dead_letter_keeps_the_message, settling_twice_is_not_found,
                     a_stale_lease_cannot_settle, a_stale_and_a_fresh_move_of_one_delivery_sent_together, unknown_message_is_not_found, extend_and_release_visibility,
                     receive_by_id_of_a_leased_message_is_locked, leased_count_counts_live_leases }
            executions { start_and_finish_record_an_attempt, claim_records_running_attempts,
                         settling_closes_the_attempt_once, abandoned_attempt_is_closed_on_re_lease,
                         an_ack_closes_the_attempt_with_it, a_retry_and_a_dead_letter_close_the_attempt_with_them,
                         an_attempt_is_closed_even_when_its_message_was_acknowledged_meanwhile,
                         a_late_settle_does_not_overwrite_an_abandoned_attempt,
                         the_local_dispatcher_records_the_attempt_with_its_lease,
                         an_attempt_recorded_with_its_lease_times_the_job_from_when_it_began,
                         a_lease_given_back_unused_spends_no_attempt,
                         a_release_after_its_attempt_was_rescued_keeps_it_counted,
                         a_burst_of_failures_settles_every_lease,
                         a_burst_of_acknowledgements_closes_each_attempt_with_its_own_values }
            dead_letters { list_and_get_show_the_payload, settle_replay_publishes_once, discard_then_replay_is_already_settled,
                           restore_puts_it_back, insert_keeps_a_foreign_message, a_replay_keeps_the_message_headers,
                           dead_letters_group_by_topic_and_first_line }
            crons { a_tick_is_claimed_once, runs_finish_and_summarise, lock_acquire_extend_release_expire }
            maintenance { prunes_finished_messages_by_age, prunes_finished_messages_by_count_never_unfinished,
                          rescues_abandoned_executions_and_prunes_rows,
                          finished_messages_go_after_their_retention_live_ones_stay,
                          count_limits_keep_the_newest_and_never_a_running_attempt,
                          cron_runs_keep_each_crons_latest_run_and_latest_success,
                          maintenance_closes_running_rows_whose_lease_expired,
                          maintenance_closes_an_attempt_whose_message_expired_and_leaves_other_queues_attempts_alone,
                          maintenance_prunes_idle_message_groups_and_expired_slots,
                          maintenance_prunes_the_groups_of_a_consumer_group_claiming_without_group_limits }
            progress { progress_is_kept_latest, sync_log_records_success_and_failure, checkpoints_round_trip }
            replace { a_pending_message_takes_the_new_payload_and_due_time, a_message_waiting_for_its_retry_is_replaced,
                      a_leased_message_hands_its_key_to_a_new_one, a_finished_message_hands_its_key_to_a_new_one,
                      a_message_without_subscribers_is_replaced, send_many_replaces_held_keys_and_earlier_ones_in_the_batch,
                      skip_leaves_the_held_message_alone, sixteen_concurrent_replaces_leave_one_message,
                      replaces_racing_claims_never_run_a_replaced_payload }
            processes { a_dead_process_leases_become_due, the_rescuer_is_never_presumed_dead, next_due_is_the_earliest_unfinished }
            remote_cancels { a_remote_cancel_is_recorded_once_and_expires }
            stats { the_rollup_counts_each_execution_once_in_the_minute_it_finished,
                    eight_rollups_at_once_count_each_execution_once }
            pauses { pause_and_resume_are_stored_and_idempotent, sixteen_concurrent_pauses_leave_one_state,
                     a_claim_skips_a_paused_topic_and_spends_nothing_on_it,
                     a_wildcard_group_claims_its_unpaused_topics_only, a_resume_drains_the_backlog_in_order,
                     a_pause_leaves_a_lease_already_taken_to_finish }
            schedules { upsert_get_list_delete_round_trip, due_is_enabled_and_overdue_oldest_first,
                        a_tick_fires_once_under_three_concurrent_callers,
                        an_edit_or_delete_between_due_and_fire_answers_changed,
                        a_trigger_fires_now_and_leaves_the_next_tick, a_due_tick_already_triggered_moves_on,
                        dst_changes_fire_each_tick_once_across_three_schedulers,
                        the_facade_skips_missed_ticks_and_refuses_bad_input, a_fire_prunes_its_old_fire_records }
            concurrency_limit { sixteen_claims_at_once_never_lease_past_the_limit,
                                an_acknowledged_or_expired_lease_frees_its_slot }
            rate_limits { a_rate_limit_allows_a_burst_then_n_per_period_across_claimers,
                          a_rate_limit_and_a_concurrency_limit_hold_together,
                          limit_overrides_are_patched_field_by_field_and_sixteen_identical_sets_leave_one_row,
                          a_start_given_back_lets_the_next_message_start_at_once }
            groups { a_full_group_does_not_hold_back_another, an_expired_lease_or_a_rescue_frees_the_slot,
                     sixteen_claims_at_once_never_exceed_the_group_limit, ungrouped_messages_are_not_limited,
                     the_group_is_kept_across_retry_and_replay,
                     the_busiest_groups_are_listed_running_first,
                     pushes_of_a_group_take_its_slots_and_its_bucket,
                     sixteen_pushes_at_once_never_take_more_than_the_group_slots,
                     the_busiest_groups_count_push_slots_as_running,
                     leases_and_push_slots_share_the_group_concurrency,
                     pushes_racing_grouped_claims_never_pass_the_group_concurrency }
            group_rate_limits { a_group_starts_a_burst_then_one_per_interval_and_never_holds_back_another,
                                sixteen_claims_at_once_never_pass_the_group_rate,
                                a_group_rate_and_a_group_concurrency_hold_together,
                                a_group_start_given_back_lets_the_group_start_again_at_once }
            group_pauses { a_pause_is_stored_idempotent_and_per_topic, sixteen_concurrent_pauses_leave_one_row,
                           a_claim_skips_a_paused_group_and_spends_nothing_on_it,
                           a_lease_names_its_messages_group_however_it_was_claimed,
                           a_grouped_claim_skips_a_paused_group_until_resumed,
                           an_ungrouped_consumer_group_claims_around_a_paused_backlog_through_the_ready_groups,
                           a_consumer_group_with_a_paused_group_still_takes_a_full_batch_of_one_group }
            schedule_modes { a_claimed_fire_is_unsent_until_its_message_is_reported,
                             a_skipped_tick_moves_on_and_publishes_nothing, the_due_query_reads_the_jittered_due_time,
                             jitter_spreads_fires_and_catch_up_can_be_off }
            outcomes { a_snoozed_retry_gives_the_attempt_back, an_ack_closing_cancelled_ends_the_delivery_cancelled,
                       a_batch_of_acks_settles_each_delivery_by_its_own_lease,
                       cancelling_a_pending_message_means_it_never_runs,
                       cancelling_a_leased_message_closes_its_attempt_and_voids_its_lease,
                       cancelling_a_finished_message_changes_nothing, cancelling_an_unknown_message_finds_nothing,
                       a_cancel_reaches_every_consumer_group, sixteen_concurrent_cancels_have_one_winner,
                       a_cancel_racing_an_ack_has_one_winner, a_dry_run_purge_counts_and_changes_nothing,
                       a_purge_of_one_group_leaves_the_others, a_purge_leaves_leased_deliveries_alone,
                       a_purge_of_a_large_backlog_goes_in_batches, delivery_cancelled_names_the_cancelled_ones,
                       the_key_of_a_cancelled_message_still_dedups,
                       maintenance_prunes_a_cancelled_message_like_a_finished_one,
                       queue_stats_count_cancelled_deliveries, execution_counts_count_snoozed_and_cancelled_attempts,
                       a_group_subscribing_later_does_not_run_a_cancelled_message }
            priorities { lower_priorities_start_first_in_due_order_within_one,
                         a_priority_is_kept_across_retry_expiry_rescue_and_replay,
                         priorities_hold_under_a_group_limit_and_a_concurrency_limit,
                         groups_are_taken_by_their_best_priority,
                         the_next_due_time_and_the_live_counts_span_every_priority }
            schedule_pages { thousands_of_schedules_page_by_name_in_byte_order, counts_and_the_overdue_read_are_bounded }
        );
        #[test]
        fn model_random_operations_keep_the_invariants() {
            $crate::model::run(|| $make());
        }
    };
    (@areas $make:ident; $($area:ident { $($case:ident),* $(,)? })*) => {
        $(
            mod $area {
                $(
                    #[tokio::test]
                    async fn $case() {
                        $crate::run_case(|| super::$make(), $crate::$area::$case).await;
                    }
                )*
            }
        )*
    };
}
