//! Per-process secret tokens that every connection must present.

use std::fmt;
use std::io::Read;

/// A process's secret: 32 random bytes from the OS, carried as 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A fresh token from the OS random source.
    pub(crate) fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// A token received from the manager (through the bootstrap environment).
    pub(crate) fn from_string(token: String) -> Self {
        Self(token)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let ours = self.0.as_bytes();
        let theirs = presented.as_bytes();
        let mut diff = ours.len() ^ theirs.len();
        for (i, byte) in ours.iter().enumerate() {
            let other = theirs.get(i).copied().unwrap_or(0);
            diff |= usize::from(byte ^ other);
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_and_differ() {
        let a = Token::generate().expect("urandom");
        let b = Token::generate().expect("urandom");
        assert_eq!(a.as_str().len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_token_matches_only_itself() {
        let token = Token::from_string("abcd".into());
        assert!(token.matches("abcd"));
        assert!(!token.matches("abce"));
        assert!(!token.matches("abc"));
        assert!(!token.matches("abcde"));
        assert!(!token.matches(""));
    }
}
