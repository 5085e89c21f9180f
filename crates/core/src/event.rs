//! What the engine records in the audit log (`events` table) and hands to the webhook sender:
//! the kind of each event and its outcome. The text of each variant (`as_str`) is what the
//! store holds, the admin API lists and tests filter by, so it never changes; `parse` reads it
//! back and refuses any other text.

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $error:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        #[doc = concat!("Text that names no [`", stringify!($name), "`].")]
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("unknown {} `{}`", $what, .0)]
        pub struct $error(pub String);

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Result<$name, $error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($error(s.to_owned())),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// The kind of an audit-log event the engine records.
    EventKind, UnknownEventKind, "event kind" {
        /// The first tokens of a credential were stored.
        TokenObtained = "token.obtained",
        TokenRefreshed = "token.refreshed",
        /// Outcome `terminal` (tokens erased) or `transient` (backing off).
        TokenRefreshFailed = "token.refresh_failed",
        /// The refresh token was refused; the grant is repeated (`fallback`).
        TokenRefreshRefused = "token.refresh_refused",
        TokenReauthorizationRequired = "token.reauthorization_required",
        /// A degraded, refused or abandoned credential works again (`previous_state`).
        TokenRecovered = "token.recovered",
        /// Another writer stored tokens first; ours were dropped.
        TokenCommitConflict = "token.commit_conflict",
        /// A refresh's answer was lost after it may have reached the provider (`retrying`).
        TokenRefreshAmbiguous = "token.refresh_ambiguous",
        /// A lease ran out without being given back (SECURITY S24).
        TokenRefreshOutcomeUnknown = "token.refresh_outcome_unknown",
        ConnectionCreated = "connection.created",
        /// Connected again after the credential was degraded or refused.
        ConnectionRecovered = "connection.recovered",
        ConnectionReconnected = "connection.reconnected",
        /// The provider refused the authorization code.
        ConnectionExchangeFailed = "connection.exchange_failed",
        ConnectionProfileFailed = "connection.profile_failed",
        ConnectionDeleted = "connection.deleted",
        /// An app key exchanged a user's token for that user's provider access token
        /// (RFC 8693, `POST /v1/token`); outcome `ok`, or `error` when it could not be given.
        TokenExchanged = "token.exchanged",
        WebhookDelivered = "webhook.delivered",
        WebhookFailed = "webhook.failed",
    }
}

text_enum! {
    /// How the event ended (`outcome`).
    EventOutcome, UnknownEventOutcome, "event outcome" {
        Ok = "ok",
        Error = "error",
        /// The provider refused the credential.
        Terminal = "terminal",
        /// A failure that may pass (5xx, timeout); the credential is kept.
        Transient = "transient",
        /// The refresh token was refused and the grant is tried instead.
        Fallback = "fallback",
        Retrying = "retrying",
        /// Whether a refresh happened is not known.
        Unknown = "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::{EventKind, EventOutcome, UnknownEventKind, UnknownEventOutcome};

    #[test]
    fn kinds_round_trip_as_the_stored_text() {
        let texts: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            texts,
            [
                "token.obtained",
                "token.refreshed",
                "token.refresh_failed",
                "token.refresh_refused",
                "token.reauthorization_required",
                "token.recovered",
                "token.commit_conflict",
                "token.refresh_ambiguous",
                "token.refresh_outcome_unknown",
                "connection.created",
                "connection.recovered",
                "connection.reconnected",
                "connection.exchange_failed",
                "connection.profile_failed",
                "connection.deleted",
                "token.exchanged",
                "webhook.delivered",
                "webhook.failed",
            ]
        );
        for &kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }

    #[test]
    fn outcomes_round_trip_as_the_stored_text() {
        let texts: Vec<_> = EventOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(texts, ["ok", "error", "terminal", "transient", "fallback", "retrying", "unknown"]);
        for &outcome in EventOutcome::ALL {
            assert_eq!(EventOutcome::parse(outcome.as_str()), Ok(outcome));
        }
    }

    #[test]
    fn unknown_text_is_an_error() {
        assert_eq!(EventKind::parse("token.Obtained"), Err(UnknownEventKind("token.Obtained".into())));
        assert_eq!(EventKind::parse("").unwrap_err().to_string(), "unknown event kind ``");
        assert_eq!(EventOutcome::parse("OK").unwrap_err().to_string(), "unknown event outcome `OK`");
        assert_eq!(EventOutcome::parse("x"), Err(UnknownEventOutcome("x".into())));
    }
}
