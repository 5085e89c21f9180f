//! The request being answered: its id (`Latchkey-Request-Id`, taken from a sane `X-Request-Id`
//! or made here) and what the call path learnt about it (connector, environment, call, the
//! upstream's share of the time), kept in a task-local for the length of the request so that
//! every [`crate::ApiError`] can carry the id in its body and the metrics and the log line can
//! read the labels, without threading them through every handler.

use std::cell::RefCell;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use latchkey_core::Env;

use crate::metrics::ConnectorStats;

/// The response header that names the request.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("latchkey-request-id");

/// The longest `X-Request-Id` taken as it is.
const MAX_INCOMING: usize = 128;

tokio::task_local! {
    // Boxed: the task-local's value is swapped in and out on every poll of the request.
    static CURRENT: Box<Current>;
}

/// One request's id and labels.
pub(crate) struct Current {
    labels: RefCell<Labels>,
}

/// The request's id and what the call path noted about it.
#[derive(Default)]
pub(crate) struct Labels {
    /// Taken (not copied) into the answer's header once the answer is made.
    pub(crate) id: Option<HeaderValue>,
    /// The connector's counters: only for a connector that exists (never a name a caller made up).
    pub(crate) connector: Option<&'static ConnectorStats>,
    pub(crate) env: Option<Env>,
    /// The named call, when the connector has it (the log line only).
    pub(crate) call: Option<String>,
    /// How long the upstream took to answer, when it answered.
    pub(crate) upstream: Option<Duration>,
}

impl Current {
    pub(crate) fn new(incoming: Option<&HeaderValue>) -> Box<Self> {
        let labels = Labels { id: Some(request_id(incoming)), ..Labels::default() };
        Box::new(Current { labels: RefCell::new(labels) })
    }

    /// The request's id.
    pub(crate) fn id(&self) -> Option<HeaderValue> {
        self.labels.borrow().id.clone()
    }

    /// Runs `fut` as this request.
    pub(crate) fn scope<F: Future>(self: Box<Self>, fut: F) -> tokio::task::futures::TaskLocalFuture<Box<Current>, F> {
        CURRENT.scope(self, fut)
    }

    /// Runs `f` as this request.
    pub(crate) fn sync_scope<R>(self: Box<Self>, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

/// Whether a request is being answered in this task.
pub(crate) fn in_request() -> bool {
    CURRENT.try_with(|_| ()).is_ok()
}

/// The id of the request being answered, if any (and not yet taken into its answer).
pub(crate) fn current_id() -> Option<HeaderValue> {
    CURRENT.try_with(|c| c.id()).ok().flatten()
}

/// Notes labels for the request being answered (nothing outside one).
pub(crate) fn note(f: impl FnOnce(&mut Labels)) {
    let _ = CURRENT.try_with(|c| f(&mut c.labels.borrow_mut()));
}

/// Reads and takes from the request's labels (`None` outside a request).
pub(crate) fn with<R>(f: impl FnOnce(&mut Labels) -> R) -> Option<R> {
    CURRENT.try_with(|c| f(&mut c.labels.borrow_mut())).ok()
}

/// The caller's `X-Request-Id` when it is sane (1 to 128 characters of letters, digits and
/// `-_.:+/=@`: a UUID, a hex or base64 id, a `req_…` name), else one made here: a random
/// prefix drawn once per process and a counter, so no system call per request.
pub(crate) fn request_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = incoming.filter(|v| sane(v.as_bytes())) {
        return v.clone();
    }
    static PREFIX: LazyLock<[u8; 12]> = LazyLock::new(|| {
        // `RandomState` keys are drawn from the operating system's random source.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let mut prefix = [0u8; 12];
        for (i, b) in prefix.iter_mut().enumerate() {
            *b = b"0123456789abcdef"[(random >> (4 * i)) as usize & 0xf];
        }
        prefix
    });
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
    // `<prefix>-<n>`, the counter in decimal, written backwards from the end.
    let mut id = [0u8; 12 + 1 + 20];
    let mut start = id.len();
    loop {
        start -= 1;
        id[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    start -= 1;
    id[start] = b'-';
    start -= 12;
    id[start..start + 12].copy_from_slice(&*PREFIX);
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&id[start..]))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// An id that can be logged, echoed and put in a JSON body as it is.
pub(crate) fn sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_INCOMING
        && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::{request_id, sane};

    #[test]
    fn a_sane_incoming_id_is_kept_and_any_other_replaced() {
        for id in ["abc", "0f8fad5b-d9cb-469f-a165-70867728950e", "req_01HZX:a/b+c=@d.e", &"a".repeat(128)] {
            let v = HeaderValue::from_str(id).unwrap();
            assert_eq!(request_id(Some(&v)), v, "{id:?}");
        }
        for id in ["", "has space", "tab\there", "quote\"", "semi;colon", "ünïcode", &"a".repeat(129), "<script>"] {
            assert!(!sane(id.as_bytes()), "{id:?}");
        }
        let bad = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        let made = request_id(Some(&bad));
        assert_ne!(made, bad);
        assert!(sane(made.as_bytes()), "{made:?}");
    }

    #[test]
    fn made_ids_are_sane_and_unique() {
        let a = request_id(None);
        let b = request_id(None);
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert!(sane(id.as_bytes()), "{id:?}");
            let (prefix, n) = id.to_str().unwrap().split_once('-').unwrap();
            assert_eq!(prefix.len(), 12, "{id:?}");
            assert!(n.parse::<u64>().is_ok(), "{id:?}");
        }
        assert_eq!(a.to_str().unwrap().split_once('-').unwrap().0, b.to_str().unwrap().split_once('-').unwrap().0);
    }
}
