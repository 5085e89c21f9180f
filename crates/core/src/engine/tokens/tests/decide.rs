//! The pure decisions, without a manager.

use std::sync::Arc;
use std::time::Duration;

use crate::secret::AccessToken;

use super::super::decide::{self, Cached, Failure, LeaseWait, Mode, Waiter};
use super::{HOUR, T0, access, ambiguous_timeout, refused, source, token_set, transient};
use crate::event::{EventKind, EventOutcome};
use crate::store::{TokenKey, TokenRow};
use crate::token::{ShownState, TokenState};
use crate::{Env, ErrorCode, Retry};

fn cached_with(lifetime_ms: i64) -> Cached {
    Cached { set: Some(Arc::new(token_set("at-1", Some("rt-1"), T0, lifetime_ms))), ..Cached::default() }
}

fn row(epoch: i64, lease_until: i64) -> TokenRow {
    TokenRow {
        key: TokenKey::app("crm", Env::Live),
        sealed: None,
        expires_at: None,
        state: TokenState::Ok,
        last_error: None,
        last_refresh_at: None,
        last_used_at: None,
        version: 3,
        lease_until,
        epoch,
        updated_at: 0,
    }
}

#[test]
fn the_default_skew_is_300_s_capped_at_half_the_lifetime() {
    let src = source();
    let hour = token_set("a", None, T0, HOUR);
    assert_eq!(src.skew_for(&hour), 300_000);
    assert!(decide::is_fresh(&hour, &src, T0 + HOUR - 300_001));
    assert!(!decide::is_fresh(&hour, &src, T0 + HOUR - 300_000), "within the skew: stale");
    // A 60-second token: the skew is 30 s, so it is not refreshed on every call.
    let minute = token_set("a", None, T0, 60_000);
    assert_eq!(src.skew_for(&minute), 30_000);
    assert!(decide::is_fresh(&minute, &src, T0 + 29_999));
    assert!(!decide::is_fresh(&minute, &src, T0 + 30_000));
}

#[test]
fn a_configured_skew_is_used_as_it_is_even_past_the_lifetime() {
    let mut src = source();
    src.skew_ms = 120_000;
    src.skew_configured = true;
    let minute = token_set("a", None, T0, 60_000);
    assert_eq!(src.skew_for(&minute), 120_000);
    assert!(!decide::is_fresh(&minute, &src, T0), "every use refreshes");
}

#[test]
fn a_token_without_expiry_is_always_fresh() {
    let mut set = token_set("a", None, T0, HOUR);
    set.expires_at = None;
    assert!(decide::is_fresh(&set, &source(), i64::MAX));
}

#[test]
fn the_backoff_window_doubles_from_2_s_and_is_capped_at_5_min() {
    let windows: Vec<i64> = (1..=9).map(decide::backoff_window).collect();
    assert_eq!(windows, [2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000]);
    assert_eq!(decide::backoff_window(40), 300_000, "no overflow past the cap");
}

#[test]
fn the_backoff_is_full_jitter_over_the_window() {
    assert_eq!(decide::backoff_ms(1, None, 0), 0);
    assert_eq!(decide::backoff_ms(1, None, 1_999), 1_999);
    assert_eq!(decide::backoff_ms(1, None, 2_000), 0, "the roll wraps within the window");
    assert_eq!(decide::backoff_ms(3, None, u64::MAX), i64::try_from(u64::MAX % 8_000).unwrap());
}

#[test]
fn retry_after_is_a_floor_of_the_backoff_capped_at_5_min() {
    assert_eq!(decide::backoff_ms(1, Some(Duration::from_secs(30)), 5), 30_000);
    assert_eq!(decide::backoff_ms(1, Some(Duration::from_secs(3_600)), 5), 300_000);
    assert_eq!(decide::backoff_ms(9, Some(Duration::from_secs(1)), 250_000), 250_000, "jitter longer");
}

#[test]
fn retries_within_a_call_are_few_short_and_honour_a_short_retry_after() {
    assert_eq!(decide::retry_within_call(1, None, 0), Some(Duration::from_millis(200)));
    assert_eq!(decide::retry_within_call(1, None, 399), Some(Duration::from_millis(599)));
    assert_eq!(decide::retry_within_call(2, None, 0), Some(Duration::from_millis(400)));
    assert_eq!(decide::retry_within_call(3, None, 0), None, "three tries in all");
    let second = Some(Duration::from_secs(1));
    assert_eq!(decide::retry_within_call(1, second, 7), second);
    assert_eq!(decide::retry_within_call(1, Some(Duration::from_secs(2)), 7), Some(Duration::from_secs(2)));
    assert_eq!(decide::retry_within_call(1, Some(Duration::from_millis(2_001)), 7), None, "longer: back off");
}

#[test]
fn a_lease_lasts_5_s_extended_every_third_and_a_waiter_waits_the_timeout_and_one_lease() {
    assert_eq!((decide::LEASE_MS, decide::HEARTBEAT_MS), (5_000, 1_666));
    assert_eq!(decide::wait_bound_ms(Duration::from_secs(10)), 15_000);
    assert_eq!(decide::wait_bound_ms(Duration::from_secs(30)), 35_000);
}

#[test]
fn a_lease_taken_over_from_an_unreleased_holder_is_an_abandoned_refresh() {
    let leased = row(5, 99_000);
    assert_eq!(decide::abandoned(Some(&row(4, 1_000)), &leased), Some(1_000));
    assert_eq!(decide::abandoned(Some(&row(4, 0)), &leased), None, "given back");
    assert_eq!(decide::abandoned(Some(&row(3, 1_000)), &leased), None, "not the lease just before ours");
    assert_eq!(decide::abandoned(None, &leased), None, "a first lease");
    // The holder committed between our last read and our take: it finished.
    let mut committed = row(5, 99_000);
    committed.version += 1;
    assert_eq!(decide::abandoned(Some(&row(4, 1_000)), &committed), None, "committed since it was read");
}

#[test]
fn a_success_after_trouble_is_a_recovery_from_it() {
    assert_eq!(decide::recovered_from(TokenState::Ok, true), Some(ShownState::RefreshOutcomeUnknown));
    assert_eq!(decide::recovered_from(TokenState::Degraded, false), Some(ShownState::Stored(TokenState::Degraded)));
    let reauth = ShownState::Stored(TokenState::ReauthorizationRequired);
    assert_eq!(decide::recovered_from(TokenState::ReauthorizationRequired, false), Some(reauth));
    assert_eq!(decide::recovered_from(TokenState::Ok, false), None);
    assert_eq!(decide::recovered_from(TokenState::Empty, false), None);
}

#[test]
fn the_first_tokens_are_obtained_later_ones_refreshed() {
    assert_eq!(decide::obtained_kind(&row(1, 0)), EventKind::TokenObtained);
    let mut stored = row(1, 0);
    stored.sealed = Some(vec![1]);
    assert_eq!(decide::obtained_kind(&stored), EventKind::TokenRefreshed);
}

#[test]
fn while_another_holds_the_lease_a_stale_valid_token_is_served_and_others_wait() {
    let src = source();
    let c = cached_with(HOUR);
    let stale = T0 + HOUR - 1_000;
    let if_stale = Waiter::Refresh { mode: Mode::IfStale, refused: None };
    match decide::while_leased(&c, &src, if_stale, stale, stale) {
        LeaseWait::Serve(o) => assert!(access(&o.token) == "at-1" && !o.fresh),
        _ => panic!("a valid token is served"),
    }
    let replace = Waiter::Refresh { mode: Mode::Replace, refused: None };
    assert!(matches!(decide::while_leased(&c, &src, replace, stale, stale), LeaseWait::Wait));
    assert!(matches!(decide::while_leased(&c, &src, Waiter::Install, stale, stale), LeaseWait::Wait));
    let expired = T0 + HOUR;
    assert!(matches!(decide::while_leased(&c, &src, if_stale, expired, expired), LeaseWait::Wait));
}

#[test]
fn a_waiter_is_told_what_it_waited_for_after_the_timeout_and_one_lease() {
    let (src, c) = (source(), Cached::default());
    let waiter = Waiter::Refresh { mode: Mode::IfStale, refused: None };
    assert!(matches!(decide::while_leased(&c, &src, waiter, T0 + 15_000, T0), LeaseWait::Wait));
    match decide::while_leased(&c, &src, waiter, T0 + 15_001, T0) {
        LeaseWait::GiveUp(e) => {
            assert_eq!((e.code, e.retry()), (ErrorCode::Unavailable, Retry::Later));
            assert_eq!(
                e.message,
                "connector `crm`: another instance holds its token refresh and did not finish it within 15 s \
                 (the connector's timeout, 10 s, and the 5 s refresh lease); try again shortly, and look at that \
                 instance's log if this lasts"
            );
            assert_eq!(e.details["connector"], "crm");
            assert_eq!(e.details["waited_ms"], 15_001);
            assert_eq!(e.details["lease_held_elsewhere"], true);
        }
        _ => panic!("gives up"),
    }
    match decide::while_leased(&c, &src, Waiter::Install, T0 + 15_001, T0) {
        LeaseWait::GiveUp(e) => assert!(e.message.contains("connect again"), "{}", e.message),
        _ => panic!("gives up"),
    }
}

#[test]
fn a_cached_refusal_fails_fast_until_the_credential_changes() {
    let mut src = source();
    let error = refused("invalid_client").to_call_error("crm");
    let c = Cached {
        failure: Some(Failure { error, fingerprint: src.fingerprint, next_attempt_at: 0, attempts: 0 }),
        ..Cached::default()
    };
    let e = decide::from_cache(&c, &src, Mode::IfStale, None, T0).unwrap().err().unwrap();
    assert_eq!(e.code, ErrorCode::ReauthorizationRequired);
    assert!(e.message.contains("(invalid_client)"), "{}", e.message);
    src.fingerprint = [2; 32];
    assert!(decide::from_cache(&c, &src, Mode::IfStale, None, T0).is_none(), "new secrets are tried at once");
}

#[test]
fn a_cached_transient_failure_backs_off_serving_a_valid_token_meanwhile() {
    let src = source();
    let error = transient(503, None).to_call_error("crm");
    let mut c = cached_with(HOUR);
    c.failure = Some(Failure { error, fingerprint: src.fingerprint, next_attempt_at: T0 + HOUR - 1_000, attempts: 1 });
    let stale = T0 + HOUR - 2_000;
    let served = decide::from_cache(&c, &src, Mode::IfStale, None, stale).unwrap().ok().unwrap();
    assert!(!served.fresh);
    let refused_token = AccessToken::from("at-1".to_owned());
    let e = decide::from_cache(&c, &src, Mode::Replace, Some(&refused_token), stale).unwrap().err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::Later));
    assert!(decide::from_cache(&c, &src, Mode::IfStale, None, T0 + HOUR - 1_000).is_none(), "backoff over");
}

#[test]
fn a_replacement_is_answered_by_a_token_other_than_the_refused_one() {
    let src = source();
    let c = cached_with(HOUR);
    let old = AccessToken::from("at-0".to_owned());
    let o = decide::from_cache(&c, &src, Mode::Replace, Some(&old), T0 + 1).unwrap().ok().unwrap();
    assert!(o.fresh && access(&o.token) == "at-1");
    let same = AccessToken::from("at-1".to_owned());
    assert!(decide::from_cache(&c, &src, Mode::Replace, Some(&same), T0 + 1).is_none());
}

#[test]
fn a_keep_alive_is_answered_by_a_token_renewed_within_half_the_keep_alive() {
    let src = source();
    let c = cached_with(48 * HOUR);
    assert!(decide::from_cache(&c, &src, Mode::KeepAlive, None, T0 + 12 * HOUR - 1).is_some());
    assert!(decide::from_cache(&c, &src, Mode::KeepAlive, None, T0 + 12 * HOUR).is_none());
}

#[test]
fn a_refusal_erases_the_tokens_and_asks_for_reauthorization_once() {
    let src = source();
    let c = cached_with(HOUR);
    let after = decide::after_failure(&refused("invalid_grant"), &c, &src, Mode::IfStale, TokenState::Ok, T0, 0);
    assert!(after.erase);
    assert_eq!(after.write.state, TokenState::ReauthorizationRequired);
    assert_eq!((after.write.sealed, after.write.expires_at), (Some(None), Some(None)));
    let kinds: Vec<_> = after.events.iter().map(|(k, o, _)| (*k, *o)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::TokenRefreshFailed, EventOutcome::Terminal),
            (EventKind::TokenReauthorizationRequired, EventOutcome::Terminal)
        ]
    );
    assert!(after.failure.refused());
    assert_eq!(after.answer.err().unwrap().retry(), Retry::Never);
    let again = decide::after_failure(
        &refused("invalid_grant"),
        &Cached::default(),
        &src,
        Mode::IfStale,
        TokenState::ReauthorizationRequired,
        T0,
        0,
    );
    assert_eq!(again.events.len(), 1, "reauthorization_required is recorded once");
}

#[test]
fn a_transient_failure_keeps_the_tokens_degrades_and_backs_off_longer_each_time() {
    let src = source();
    let mut c = cached_with(HOUR);
    let stale = T0 + HOUR - 1_000;
    let after = decide::after_failure(&transient(503, None), &c, &src, Mode::IfStale, TokenState::Ok, stale, 1_999);
    assert!(!after.erase && after.write.sealed.is_none() && after.write.expires_at.is_none());
    assert_eq!(after.write.state, TokenState::Degraded);
    assert_eq!(after.events[0].0, EventKind::TokenRefreshFailed);
    assert_eq!(after.events[0].2["previous_state"], "ok");
    assert_eq!((after.failure.attempts, after.failure.next_attempt_at), (1, stale + 1_999));
    assert!(!after.answer.as_ref().unwrap().fresh, "the still-valid token is answered");
    c.failure = Some(after.failure);
    let second =
        decide::after_failure(&transient(503, None), &c, &src, Mode::IfStale, TokenState::Degraded, stale, 3_999);
    assert_eq!((second.failure.attempts, second.failure.next_attempt_at), (2, stale + 3_999));
    let replace = decide::after_failure(&transient(503, None), &c, &src, Mode::Replace, TokenState::Ok, stale, 0);
    assert!(replace.answer.is_err(), "a replacement never gets the refused token back");
}

#[test]
fn a_transient_failure_with_retry_after_tells_the_caller_when() {
    let src = source();
    let after = decide::after_failure(
        &transient(429, Some(Duration::from_secs(40))),
        &Cached::default(),
        &src,
        Mode::IfStale,
        TokenState::Ok,
        T0,
        0,
    );
    assert_eq!(after.failure.next_attempt_at, T0 + 40_000);
    let e = after.answer.err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::After(Duration::from_secs(40))));
}

#[test]
fn an_ambiguous_timeout_is_a_transient_token_request_failure() {
    let after = decide::after_failure(
        &ambiguous_timeout(),
        &Cached::default(),
        &source(),
        Mode::IfStale,
        TokenState::Ok,
        T0,
        0,
    );
    assert!(!after.erase);
    assert_eq!(after.events[0].2["timed_out"], true);
    let e = after.answer.err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::Later));
    assert!(!after.failure.refused());
}

#[test]
fn a_refused_reactive_token_pauses_replacements_for_a_minute() {
    let c = cached_with(HOUR);
    let current = token_set("at-1", None, T0, HOUR);
    assert_eq!(decide::pause_reactive(&c, &current, T0), Some((T0 + 60_000, true)));
    let paused = Cached { reactive_paused_until: T0 + 60_000, ..cached_with(HOUR) };
    assert_eq!(decide::pause_reactive(&paused, &current, T0 + 1), Some((T0 + 60_001, false)), "logged once");
    let other = token_set("at-0", None, T0, HOUR);
    assert_eq!(decide::pause_reactive(&c, &other, T0), None, "not the cached token");
}

#[test]
fn uses_are_recorded_at_most_every_minute() {
    let c = Cached { last_touch: T0, ..Cached::default() };
    assert!(!decide::touch_due(&c, T0 + 59_999));
    assert!(decide::touch_due(&c, T0 + 60_000));
}
