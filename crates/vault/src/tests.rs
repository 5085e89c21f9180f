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
