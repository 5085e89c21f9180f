//! Unit tests of the token lifecycle, on a fake clock and the in-memory store.

mod shown;
