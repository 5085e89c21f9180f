//! Random values from the operating system's CSPRNG (through aws-lc-rs).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

#[expect(clippy::expect_used, reason = "the system CSPRNG does not fail")]
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).expect("the system CSPRNG does not fail");
    out
}

/// Fills `out` with random bytes (a CSPRNG for a library that asks for one: RSA blinding).
#[expect(clippy::expect_used, reason = "the system CSPRNG does not fail")]
pub fn fill(out: &mut [u8]) {
    SystemRandom::new().fill(out).expect("the system CSPRNG does not fail");
}

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random string of `len` characters from `[0-9A-Za-z]` (about 5.95 bits each), unbiased.
pub fn token(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in bytes::<64>() {
            // 248 = 4 * 62: rejecting larger bytes keeps the choice uniform.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}
