//! Percent-decoding of connection-string parts that may hold a password.

use zeroize::{Zeroize, Zeroizing};

/// Decodes `%XX` escapes (any other byte, `+` included, stands for itself). The result
/// and every intermediate buffer are zeroized when dropped. `None` when an escape is
/// malformed or the decoded bytes are not UTF-8.
pub fn percent_decode(s: &str) -> Option<Zeroizing<String>> {
    let bytes = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // The buffer moves into the String without a copy; on failure it is zeroized here.
    match String::from_utf8(std::mem::take(&mut *out)) {
        Ok(text) => Some(Zeroizing::new(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_the_rest() {
        assert_eq!(
            percent_decode("p%3Ass%2Fw").as_deref().map(String::as_str),
            Some("p:ss/w")
        );
        assert_eq!(percent_decode("a+b").as_deref().map(String::as_str), Some("a+b"));
        assert_eq!(
            percent_decode("%C3%A9t%C3%A9").as_deref().map(String::as_str),
            Some("été")
        );
        assert_eq!(percent_decode("").as_deref().map(String::as_str), Some(""));
    }

    #[test]
    fn refuses_malformed_escapes_and_non_utf8() {
        for bad in ["%", "%4", "%zz", "%+1", "%-1", "abc%G0", "%FF", "%C3"] {
            assert!(percent_decode(bad).is_none(), "{bad}");
        }
    }
}
