//! `shown_state` at each boundary of the lease.

use super::super::shown_state;
use crate::Env;
use crate::store::{TokenKey, TokenRow};
use crate::token::{ShownState, TokenState};

fn row(state: TokenState, lease_until: i64) -> TokenRow {
    TokenRow {
        key: TokenKey::app("crm", Env::Live),
        sealed: None,
        expires_at: None,
        state,
        last_error: None,
        last_refresh_at: None,
        last_used_at: None,
        version: 0,
        lease_until,
        epoch: 1,
        updated_at: 0,
    }
}

#[test]
fn shown_state_is_the_stored_state_without_a_lease() {
    for state in TokenState::ALL {
        assert_eq!(shown_state(&row(state, 0), 1_000), ShownState::Stored(state));
    }
}

#[test]
fn shown_state_is_refreshing_while_a_lease_runs() {
    for state in TokenState::ALL {
        assert_eq!(shown_state(&row(state, 1_001), 1_000), ShownState::Refreshing);
    }
}

#[test]
fn shown_state_is_refresh_outcome_unknown_once_a_lease_ran_out_unreleased() {
    // `lease_until` neither 0 (given back) nor in the future (running): SECURITY S24.
    for until in [1, 999, 1_000] {
        let shown = shown_state(&row(TokenState::Ok, until), 1_000);
        assert_eq!(shown, ShownState::RefreshOutcomeUnknown);
        assert_eq!(shown.as_str(), "refresh_outcome_unknown");
    }
}
