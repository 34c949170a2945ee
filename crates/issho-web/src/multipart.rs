//! `multipart/form-data` bodies (RFC 7578), read by hand: the boundary from the Content-Type,
//! each part's `name` (and `filename`) from its Content-Disposition, and its bytes. Parts that
//! cannot be read are left out (the handler then misses what it needs and says so).

use axum::http::{HeaderMap, header};

/// One part of a form.
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

fn param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of a multipart/form-data body (none when it is not one).
pub fn parts(headers: &HeaderMap, body: &[u8]) -> Vec<Part> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Vec::new();
    }
    // RFC 2046: a boundary is 1 to 70 characters (a longer one would make the search slow).
    let Some(boundary) = param(ct, "boundary").filter(|b| !b.is_empty() && b.len() <= 70) else {
        return Vec::new();
    };
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let Some(mut at) = find(body, delim.as_bytes(), 0) else {
        return out;
    };
    loop {
        let start = at + delim.len();
        if body.get(start..start + 2) == Some(b"--") {
            break; // the closing delimiter
        }
        let Some(head_end) = find(body, b"\r\n\r\n", start) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[start..head_end]);
        let Some(next) = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4) else {
            break;
        };
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or("");
        if let Some(name) = param(disposition, "name") {
            out.push(Part {
                name,
                filename: param(disposition, "filename"),
                data: body[head_end + 4..next].to_vec(),
            });
        }
        at = next + 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_files_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"w.csv\"\r\nContent-Type: text/csv\r\n\r\ndate,weight\r\n2026-12-01,60\r\n--XyZ--\r\n";
        let p = parts(&h, body);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "csrf");
        assert_eq!(p[0].data, b"abc");
        assert_eq!(p[1].filename.as_deref(), Some("w.csv"));
        assert_eq!(p[1].data, b"date,weight\r\n2026-12-01,60");
        assert!(parts(&HeaderMap::new(), body).is_empty());
        let mut long = HeaderMap::new();
        let b = "-".repeat(71);
        long.insert(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={b}")
                .parse()
                .unwrap(),
        );
        assert!(parts(&long, body).is_empty());
        // Malformed bodies give what can be read, never a panic.
        for bad in [
            &b"--XyZ"[..],
            b"--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx",
            b"",
        ] {
            let _ = parts(&h, bad);
        }
    }
}
