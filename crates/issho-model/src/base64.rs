//! Base64 (RFC 4648), standard and URL-safe alphabets: FHIR `base64Binary`, Binary.data
//! carrying a JSON Patch, FHIRPath `encode()`/`decode()`.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encode; `url` selects the URL-safe alphabet.
pub fn encode(data: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                let mut c = B64[((n >> (18 - 6 * i)) & 63) as usize] as char;
                if url {
                    c = match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    };
                }
                out.push(c);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode either alphabet; whitespace is skipped, decoding stops at `=`; None for any
/// other character.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"\xff\xfe\x00"] {
            assert_eq!(super::decode(&super::encode(data, false)).unwrap(), data);
            assert_eq!(super::decode(&super::encode(data, true)).unwrap(), data);
        }
        assert_eq!(super::encode(b"foobar", false), "Zm9vYmFy");
        assert!(super::decode("Zm9v!").is_none());
    }
}
