//! Percent-encoding of query values, as far as the status endpoint's `token` needs it.

/// `value` with every byte outside the unreserved set (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query value decoded: `%XX` to its byte and `+` to a space; a `%` not followed by two
/// hex digits is kept as it is, and bytes that are not UTF-8 are replaced.
pub(crate) fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_encode_writes_decode_reads_back() {
        for value in ["abc-123", "a+b/c=d", "sp ace&amp", "ünïcode", "%41"] {
            assert_eq!(decode(&encode(value)), value);
        }
        assert_eq!(encode("a+b/="), "a%2Bb%2F%3D");
    }

    #[test]
    fn decoding_reads_plus_as_space_and_keeps_a_stray_percent() {
        assert_eq!(decode("a+b%2Bc"), "a b+c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
