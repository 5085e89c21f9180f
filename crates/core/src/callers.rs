//! Who is calling: admin keys (`lk_admin_…`) and environment-bound app keys (`lk_live_…`,
//! `lk_dev_…`). A key is `prefix + id (12) + secret (32)`; only its SHA-256 is stored, and the
//! presented key's hash is compared in constant time. Verified keys are cached in memory, so
//! authentication costs no store round trip.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use latchkey_vault::{constant_time_eq, random, sha256};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::store::{KeyKind, KeyRow, Store, StoreResult};
use crate::{CallError, Env, ErrorCode};

const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
/// How often `last_used_at` is written for one key, at most.
const TOUCH_EVERY_MS: i64 = 60_000;
/// The key id of `LATCHKEY_ADMIN_KEY`, which has no row (real ids are `ID_LEN` characters).
const BOOTSTRAP_ID: &str = "bootstrap";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin { key_id: String },
    App { key_id: String, env: Env },
}

impl Caller {
    pub fn key_id(&self) -> &str {
        match self {
            Caller::Admin { key_id } | Caller::App { key_id, .. } => key_id,
        }
    }
}

fn prefix(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Admin => "lk_admin_",
        KeyKind::App(Env::Live) => "lk_live_",
        KeyKind::App(Env::Dev) => "lk_dev_",
    }
}

/// The public part of a key, shown in listings: prefix and id.
pub fn display_prefix(row: &KeyRow) -> String {
    format!("{}{}", prefix(row.kind), row.id)
}

/// A key just made: the row to store and the key to show once.
pub struct NewKey {
    pub row: KeyRow,
    pub key: SecretString,
}

/// `now` is when it is made (`created_at`).
pub fn generate(kind: KeyKind, name: &str, now: i64) -> NewKey {
    let id = random::token(ID_LEN);
    let key = format!("{}{id}{}", prefix(kind), random::token(SECRET_LEN));
    let row = KeyRow {
        id,
        name: name.to_owned(),
        kind,
        hash: sha256(key.as_bytes()).to_vec(),
        created_at: now,
        last_used_at: None,
    };
    NewKey { row, key: SecretString::from(key) }
}

fn parse(presented: &str) -> Option<(KeyKind, &str)> {
    for kind in [KeyKind::Admin, KeyKind::App(Env::Live), KeyKind::App(Env::Dev)] {
        if let Some(rest) = presented.strip_prefix(prefix(kind))
            && rest.len() == ID_LEN + SECRET_LEN
            && rest.is_ascii()
        {
            return Some((kind, &rest[..ID_LEN]));
        }
    }
    None
}

/// Store lookups of key ids that are not in memory, per second and process. Such a key was
/// made by another writer since the last sync (which adds it to memory within about a second
/// anyway), or does not exist: a caller sending made-up keys must not cost a query each.
const STORE_LOOKUPS_PER_SECOND: u32 = 20;
/// Ids found in no store are remembered (until any key changes) up to this many.
const MISSES_KEPT: usize = 4_096;

pub struct Callers {
    store: Arc<dyn Store>,
    bootstrap_admin: Option<[u8; 32]>,
    cache: RwLock<HashMap<String, Arc<KeyRow>>>,
    /// Bumped after every change to `cache`: a [`KeyMemo`] made before it is stale.
    epoch: AtomicU64,
    touched: Mutex<HashMap<String, i64>>,
    /// Ids the store did not have, and the epoch they were looked up in.
    misses: Mutex<(u64, HashSet<String>)>,
    /// The second (Unix) and the number of store lookups made in it.
    lookup_window: Mutex<(i64, u32)>,
    /// Store lookups of ids not in memory (`latchkey_key_store_lookups_total`).
    pub store_lookups: AtomicU64,
    clock: Arc<dyn Clock>,
}

/// The key a connection presented last, and who it turned out to be. A keep-alive connection
/// usually sends the same key on every request; checking it again against the memo is a
/// constant-time comparison, where hashing it and finding its row is 9 % of a proxied
/// request's instructions (issue 5). The memo is stale once any key was added, changed or
/// deleted since it was made, and then the key is checked in full again.
#[derive(Default)]
pub struct KeyMemo(Mutex<Option<Memo>>);

struct Memo {
    presented: SecretString,
    caller: Caller,
    epoch: u64,
    /// When the key's use was last recorded through this memo; `None` for the bootstrap admin
    /// key, which has no row.
    touched_at: Option<i64>,
}

impl std::fmt::Debug for KeyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMemo([REDACTED])")
    }
}

impl KeyMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Memo>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Callers {
    /// `bootstrap_admin` is `LATCHKEY_ADMIN_KEY`, kept only as its hash.
    pub fn new(store: Arc<dyn Store>, bootstrap_admin: Option<&SecretString>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            bootstrap_admin: bootstrap_admin.map(|k| sha256(k.expose_secret().as_bytes())),
            cache: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            touched: Mutex::new(HashMap::new()),
            misses: Mutex::new((0, HashSet::new())),
            lookup_window: Mutex::new((0, 0)),
            store_lookups: AtomicU64::new(0),
            clock,
        }
    }

    /// Whether an id not in memory may be looked up in the store now: not known to be missing
    /// since the last key change, and within [`STORE_LOOKUPS_PER_SECOND`].
    fn may_look_up(&self, id: &str) -> bool {
        let epoch = self.epoch.load(Ordering::Acquire);
        {
            let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
            if misses.0 != epoch {
                *misses = (epoch, HashSet::new());
            } else if misses.1.contains(id) {
                return false;
            }
        }
        let second = self.clock.now_ms() / 1000;
        let mut window = self.lookup_window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 >= STORE_LOOKUPS_PER_SECOND {
            return false;
        }
        window.1 += 1;
        true
    }

    fn remember_miss(&self, id: &str) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if misses.0 == epoch {
            if misses.1.len() >= MISSES_KEPT {
                misses.1.clear();
            }
            misses.1.insert(id.to_owned());
        }
    }

    /// Replaces the cache with the store's keys (at start, and when another writer changed them).
    pub async fn reload(&self) -> StoreResult<()> {
        let rows = self.store.list_keys().await?;
        let map = rows.into_iter().map(|r| (r.id.clone(), Arc::new(r))).collect();
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = map;
        self.changed();
        Ok(())
    }

    /// Applies another writer's key changes (deletions first, then the keys as they are now).
    pub fn apply(&self, keys: Vec<KeyRow>, deleted: &[String]) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for id in deleted {
            cache.remove(id);
        }
        for row in keys {
            cache.insert(row.id.clone(), Arc::new(row));
        }
        drop(cache);
        self.changed();
    }

    pub fn remember(&self, row: KeyRow) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(row.id.clone(), Arc::new(row));
        self.changed();
    }

    pub fn forget(&self, id: &str) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.changed();
    }

    /// Makes every [`KeyMemo`] stale; called after the cache changed.
    fn changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// [`Callers::authenticate`], answered from `memo` when the connection presents the same
    /// key as last time and no key changed since.
    pub async fn authenticate_memo(&self, presented: &str, memo: &KeyMemo) -> Result<Caller, CallError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let remembered = {
            let mut memo = memo.lock();
            match memo.as_mut() {
                Some(m)
                    if m.epoch == epoch
                        && constant_time_eq(m.presented.expose_secret().as_bytes(), presented.as_bytes()) =>
                {
                    let now = self.clock.now_ms();
                    let touch = m.touched_at.is_some_and(|at| now - at >= TOUCH_EVERY_MS);
                    if touch {
                        m.touched_at = Some(now);
                    }
                    Some((m.caller.clone(), touch))
                }
                _ => None,
            }
        };
        if let Some((caller, touch)) = remembered {
            if touch {
                self.touch(caller.key_id());
            }
            return Ok(caller);
        }
        let caller = self.authenticate(presented).await?;
        let bootstrap = matches!(&caller, Caller::Admin { key_id } if key_id == BOOTSTRAP_ID);
        *memo.lock() = Some(Memo {
            presented: SecretString::from(presented),
            caller: caller.clone(),
            epoch,
            touched_at: (!bootstrap).then(|| self.clock.now_ms()),
        });
        Ok(caller)
    }

    pub async fn authenticate(&self, presented: &str) -> Result<Caller, CallError> {
        let unauthenticated = || {
            CallError::new(
                ErrorCode::Unauthenticated,
                "the bearer credential is not a valid Latchkey key: send `Authorization: Bearer lk_…` \
                 with an admin or app key (create one with `latchkey key create`)",
            )
        };
        let hash = sha256(presented.as_bytes());
        if let Some(boot) = &self.bootstrap_admin
            && constant_time_eq(&hash, boot)
        {
            return Ok(Caller::Admin { key_id: BOOTSTRAP_ID.into() });
        }
        let (kind, id) = parse(presented).ok_or_else(unauthenticated)?;
        let cached = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        let row = match cached {
            Some(row) => row,
            None => {
                // A key made by another instance (or the CLI) since the last sync, which brings
                // it into memory within about a second; looked up at a bounded rate meanwhile.
                if !self.may_look_up(id) {
                    let mut e = unauthenticated();
                    e.message.push_str(
                        "; a key created by another instance or the CLI in the last second is known here after the next sync: repeat the request then",
                    );
                    return Err(e);
                }
                self.store_lookups.fetch_add(1, Ordering::Relaxed);
                let Some(row) =
                    self.store.find_key(id).await.map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))?
                else {
                    self.remember_miss(id);
                    return Err(unauthenticated());
                };
                let row = Arc::new(row);
                self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(row.id.clone(), row.clone());
                row
            }
        };
        if row.kind != kind || !constant_time_eq(&hash, &row.hash) {
            return Err(unauthenticated());
        }
        self.touch(&row.id);
        Ok(match kind {
            KeyKind::Admin => Caller::Admin { key_id: row.id.clone() },
            KeyKind::App(env) => Caller::App { key_id: row.id.clone(), env },
        })
    }

    /// Records the last use, at most once a minute per key, off the request path.
    fn touch(&self, id: &str) {
        let now = self.clock.now_ms();
        {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            match touched.get(id) {
                Some(at) if now - at < TOUCH_EVERY_MS => return,
                _ => touched.insert(id.to_owned(), now),
            };
        }
        let store = self.store.clone();
        let id = id.to_owned();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.touch_key(&id, now).await {
                    tracing::warn!(key_id = %id, error = %e, "could not record key use");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash() {
        let k = generate(KeyKind::App(Env::Dev), "ci", 0);
        let text = k.key.expose_secret();
        assert!(text.starts_with("lk_dev_"));
        assert_eq!(parse(text), Some((KeyKind::App(Env::Dev), k.row.id.as_str())));
        assert_eq!(k.row.hash, sha256(text.as_bytes()).to_vec());
        assert!(!format!("{:?}", k.row).contains(&text[7 + ID_LEN..]));
        assert_eq!(parse("lk_live_short"), None);
        assert_eq!(parse("Bearer x"), None);
    }
}
