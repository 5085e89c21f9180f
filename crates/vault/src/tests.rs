use super::*;
use secrecy::ExposeSecret;

fn aad(id: &str) -> Aad {
    Aad::new("secret", id, "value", "live")
}

#[test]
fn seal_then_open_round_trips() {
    let vault = Vault::new(&MasterKey::generate());
    let sealed = vault.seal(&aad("a"), b"canary-plaintext");
    assert_eq!(vault.open(&aad("a"), &sealed).unwrap().expose_secret(), b"canary-plaintext");
    assert!(!sealed.windows(6).any(|w| w == b"canary"), "plaintext visible in ciphertext");
}

#[test]
fn s1_ciphertext_moved_to_another_record_fails_integrity() {
    let vault = Vault::new(&MasterKey::generate());
    let sealed = vault.seal(&aad("a"), b"x");
    let err = vault.open(&aad("b"), &sealed).unwrap_err();
    assert_eq!(err, VaultError::Integrity("secret `b` field `value` (live)".into()));
    let other_env = Aad::new("secret", "a", "value", "dev");
    assert!(matches!(vault.open(&other_env, &sealed), Err(VaultError::Integrity(_))));
}

#[test]
fn wrong_key_is_named_not_confused_with_tampering() {
    let a = MasterKey::generate();
    let b = MasterKey::generate();
    let sealed = Vault::new(&a).seal(&aad("a"), b"x");
    assert_eq!(Vault::new(&b).open(&aad("a"), &sealed).unwrap_err(), VaultError::UnknownKey(a.id()));
    // A keyring that holds the old key still opens it.
    let ring = Vault::new(&b).with_old_key(&a);
    assert!(ring.open(&aad("a"), &sealed).is_ok());
    assert!(!ring.is_current(&sealed));
}

#[test]
fn tampered_and_truncated_ciphertexts_are_refused() {
    let vault = Vault::new(&MasterKey::generate());
    let mut sealed = vault.seal(&aad("a"), b"hello");
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    assert!(matches!(vault.open(&aad("a"), &sealed), Err(VaultError::Integrity(_))));
    assert_eq!(vault.open(&aad("a"), &sealed[..10]).unwrap_err(), VaultError::Malformed);
}

#[test]
fn master_key_parsing_and_debug() {
    let key = MasterKey::generate();
    let text = key.to_base64();
    let again = MasterKey::from_base64(text.expose_secret()).unwrap();
    assert_eq!(key.id(), again.id());
    assert!(!format!("{key:?}").contains(text.expose_secret()));
    assert!(format!("{key:?}").contains("[REDACTED]"));
    assert_eq!(MasterKey::from_base64("!!").unwrap_err(), key::KeyParseError::NotBase64);
    assert_eq!(MasterKey::from_base64("AAAA").unwrap_err(), key::KeyParseError::WrongLength(3));
}

#[test]
fn random_tokens_are_alphanumeric_and_distinct() {
    let a = random::token(40);
    assert_eq!(a.len(), 40);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, random::token(40));
}

#[test]
fn promote_switches_the_sealing_key_and_keeps_opening_old_ciphertexts() {
    let a = MasterKey::generate();
    let b = MasterKey::generate();
    let vault = Vault::new(&a);
    let old = vault.seal(&aad("x"), b"old");
    vault.promote(&b);
    assert_eq!(vault.active_key_id(), b.id());
    let new = vault.seal(&aad("x"), b"new");
    assert_eq!(key_id_of(&new).unwrap(), b.id());
    assert_eq!(vault.open(&aad("x"), &old).unwrap().expose_secret(), b"old");
    assert!(vault.holds(a.id()) && vault.holds(b.id()));
    assert!(!vault.is_current(&old) && vault.is_current(&new));
}

/// The term of an `LK2` ciphertext.
fn term_of(sealed: &[u8]) -> Term {
    assert!(sealed.starts_with(MAGIC), "not LK2");
    sealed[MAGIC.len() + KeyId::LEN..MAGIC.len() + KeyId::LEN + TERM_LEN].try_into().unwrap()
}

/// SECURITY S2: with a budget of 1,000 seals, 2,500 seals use three data keys (1,000, 1,000
/// and 500 seals), and every ciphertext still opens, in this vault and in another one holding
/// the same master key (another process, or this one after a restart).
#[test]
fn s2_data_keys_retire_at_their_budget_and_older_terms_still_open() {
    let master = MasterKey::generate();
    let vault = Vault::new(&master);
    vault.set_data_key_budget(1_000);
    let sealed: Vec<Vec<u8>> =
        (0..2_500).map(|i| vault.seal(&aad(&i.to_string()), format!("v{i}").as_bytes())).collect();
    let mut per_term: HashMap<Term, usize> = HashMap::new();
    for s in &sealed {
        *per_term.entry(term_of(s)).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_term.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [500, 1_000, 1_000]);
    assert_eq!(vault.data_keys_drawn(), 3);
    let restarted = Vault::new(&master);
    for (i, s) in sealed.iter().enumerate() {
        let want = format!("v{i}");
        assert_eq!(vault.open(&aad(&i.to_string()), s).unwrap().expose_secret(), want.as_bytes());
        assert_eq!(restarted.open(&aad(&i.to_string()), s).unwrap().expose_secret(), want.as_bytes());
    }
    // Each process draws its own term: the restarted vault does not seal under an old one.
    let fresh = restarted.seal(&aad("new"), b"x");
    assert!(!per_term.contains_key(&term_of(&fresh)));
}

/// The budget holds when many threads seal at once: no data key seals more than it allows.
#[test]
fn s2_the_budget_is_exact_under_concurrent_sealing() {
    let vault = Arc::new(Vault::new(&MasterKey::generate()));
    vault.set_data_key_budget(100);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let vault = vault.clone();
            std::thread::spawn(move || {
                (0..1_000).map(|i| vault.seal(&aad(&format!("{t}-{i}")), b"x")).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut per_term: HashMap<Term, usize> = HashMap::new();
    for t in threads {
        for s in t.join().unwrap() {
            *per_term.entry(term_of(&s)).or_default() += 1;
        }
    }
    assert!(per_term.values().all(|&n| n <= 100), "a data key sealed more than its budget");
    assert!(per_term.len() >= 80, "8,000 seals at 100 per key need at least 80 keys");
    assert_eq!(per_term.values().sum::<usize>(), 8_000);
}

/// Values sealed before data keys (`LK1`, directly under the master key) still open, and
/// `vault rotate` treats them as not current, so it re-seals them under a data key.
#[test]
fn lk1_ciphertexts_still_open_and_are_not_current() {
    let master = MasterKey::generate();
    let vault = Vault::new(&master);
    let sealer = Sealer::new(&master);
    let nonce = random::bytes::<NONCE_LEN>();
    let mut body = b"legacy".to_vec();
    sealer
        .direct
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), LcAad::from(aad("a").bytes()), &mut body)
        .unwrap();
    let lk1 = [&MAGIC_V1[..], &master.id().0, &nonce, &body].concat();
    assert_eq!(key_id_of(&lk1).unwrap(), master.id());
    assert_eq!(vault.open(&aad("a"), &lk1).unwrap().expose_secret(), b"legacy");
    assert!(matches!(vault.open(&aad("b"), &lk1), Err(VaultError::Integrity(_))));
    assert!(!vault.is_current(&lk1));
    assert!(vault.is_current(&vault.seal(&aad("a"), b"new")));
}

/// A new master key seals under a data key of its own at once.
#[test]
fn promote_draws_a_data_key_of_the_new_master_key() {
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    let vault = Vault::new(&a);
    let before = vault.seal(&aad("x"), b"1");
    vault.promote(&b);
    let after = vault.seal(&aad("x"), b"2");
    assert_ne!(term_of(&before), term_of(&after));
    assert_eq!(key_id_of(&after).unwrap(), b.id());
    assert_eq!(vault.data_keys_drawn(), 2);
}

#[test]
fn to_hex_is_lower_case_two_digits_per_byte() {
    assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    assert_eq!(to_hex(&[]), "");
}

#[test]
fn fingerprints_tell_part_boundaries_and_absent_from_empty() {
    let of = |parts: &[&[u8]]| {
        let mut f = crate::Fingerprint::default();
        for p in parts {
            f.part(p);
        }
        f.finish()
    };
    assert_eq!(of(&[b"ab", b"c"]), of(&[b"ab", b"c"]));
    assert_ne!(of(&[b"ab", b"c"]), of(&[b"a", b"bc"]));
    let opt = |o: Option<&[u8]>| {
        let mut f = crate::Fingerprint::default();
        f.opt(o);
        f.finish()
    };
    assert_ne!(opt(None), opt(Some(b"")));
    assert!(!format!("{:?}", crate::Fingerprint::default()).contains("Context"));
}
