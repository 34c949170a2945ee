//! Lexical rules of the FHIR primitive types (datatypes.html), written by hand.

/// `id`: 1 to 64 characters from `A-Z a-z 0-9 - .`.
pub(crate) fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `code`: no leading or trailing whitespace, whitespace only as single spaces between words
/// (`[^\s]+( [^\s]+)*`, with the ASCII whitespace of XML Schema regular expressions).
pub(crate) fn is_code(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut prev_space = true; // rejects a leading space
    for c in s.bytes() {
        if c.is_ascii_whitespace() {
            if c != b' ' || prev_space {
                return false;
            }
            prev_space = true;
        } else {
            prev_space = false;
        }
    }
    !prev_space
}

/// `uri`, `url`, `canonical`: any non-empty text without whitespace.
///
/// Whitespace means XML Schema `\s` (space, tab, CR, LF), as in the specification's regular
/// expressions; other Unicode spaces such as U+00A0 are ordinary characters there.
pub(crate) fn no_whitespace(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace())
}

/// `oid`: `urn:oid:` followed by `[0-2](\.(0|[1-9][0-9]*))+`.
pub(crate) fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut parts = rest.split('.');
    match parts.next() {
        Some("0" | "1" | "2") => {}
        _ => return false,
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        if !ok {
            return false;
        }
    }
    n > 0
}

/// `uuid`: `urn:uuid:` followed by a lowercase 8-4-4-4-12 hexadecimal UUID.
pub(crate) fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// `base64Binary`: standard alphabet with `=` padding; whitespace is tolerated anywhere.
pub(crate) fn is_base64(s: &str) -> bool {
    let mut n = 0usize;
    let mut pad = 0usize;
    for b in s.bytes() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'=' => pad += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if pad == 0 => {}
            _ => return false,
        }
        n += 1;
    }
    n > 0 && n.is_multiple_of(4) && pad <= 2
}

/// `decimal`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub(crate) fn is_decimal_text(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_len = i - start;
    if int_len == 0 || (int_len > 1 && b[start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == f {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let d = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        _ => 28,
    }
}

/// Parse the date part at the start of `b`; returns how many bytes it used and whether it is a
/// full date (YYYY-MM-DD).
fn date_prefix(b: &[u8]) -> Option<(usize, bool)> {
    let y = digits(b, 0, 4)?;
    if y == 0 {
        return None;
    }
    if b.get(4) != Some(&b'-') {
        return Some((4, false));
    }
    let m = digits(b, 5, 2)?;
    if !(1..=12).contains(&m) {
        return None;
    }
    if b.get(7) != Some(&b'-') {
        return Some((7, false));
    }
    let d = digits(b, 8, 2)?;
    if d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((10, true))
}

/// `hh:mm:ss(.f+)?` at the start of `b`; returns the bytes used.
fn time_prefix(b: &[u8]) -> Option<usize> {
    let h = digits(b, 0, 2)?;
    if h > 23 || b.get(2) != Some(&b':') {
        return None;
    }
    let m = digits(b, 3, 2)?;
    if m > 59 || b.get(5) != Some(&b':') {
        return None;
    }
    let s = digits(b, 6, 2)?;
    if s > 60 {
        return None;
    }
    let mut i = 8;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == f {
            return None;
        }
    }
    Some(i)
}

/// `Z` or `(+|-)hh:mm` with hours 00-13 (or 14:00) — must be the whole of `b`.
fn is_zone(b: &[u8]) -> bool {
    match b {
        [b'Z'] => true,
        [sign, ..] if (*sign == b'+' || *sign == b'-') && b.len() == 6 && b[3] == b':' => {
            match (digits(b, 1, 2), digits(b, 4, 2)) {
                (Some(h), Some(m)) => (h <= 13 && m <= 59) || (h == 14 && m == 0),
                _ => false,
            }
        }
        _ => false,
    }
}

/// `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
pub(crate) fn is_date(s: &str) -> bool {
    matches!(date_prefix(s.as_bytes()), Some((n, _)) if n == s.len())
}

/// `dateTime`: a date, or a full date with `Thh:mm:ss[.fff]` and a time zone.
pub(crate) fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let Some((n, full)) = date_prefix(b) else {
        return false;
    };
    if n == b.len() {
        return true;
    }
    if !full || b[n] != b'T' {
        return false;
    }
    let rest = &b[n + 1..];
    match time_prefix(rest) {
        Some(t) => is_zone(&rest[t..]),
        None => false,
    }
}

/// `instant`: `YYYY-MM-DDThh:mm:ss[.fff]` with a time zone.
pub(crate) fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(date_prefix(b), Some((10, true)))
        && b.get(10) == Some(&b'T')
        && match time_prefix(&b[11..]) {
            Some(t) => is_zone(&b[11 + t..]),
            None => false,
        }
}

/// `time`: `hh:mm:ss[.fff]`, no time zone.
pub(crate) fn is_time(s: &str) -> bool {
    time_prefix(s.as_bytes()) == Some(s.len())
}

const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// Elements that narrative must not contain (active content, forms, document structure).
const FORBIDDEN_ELEMENTS: &[&str] = &[
    "script", "style", "object", "applet", "embed", "iframe", "frame", "frameset", "form", "input",
    "button", "select", "textarea", "option", "base", "link", "meta", "html", "head", "body",
    "title", "param",
];

/// Narrative `div`: an XHTML `div` root carrying the XHTML namespace, well formed (balanced
/// tags, quoted attributes, valid entity references), without active content (`script`,
/// forms, `on*` event attributes).
pub(crate) fn check_xhtml(s: &str) -> Result<(), String> {
    let text = s.trim_start();
    if !text.starts_with("<div") {
        return Err("the narrative must be a <div> element".into());
    }
    let b = text.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut i = 0;
    let mut root_closed = false;
    let mut root_ns = false;
    while i < b.len() {
        let c = b[i];
        if root_closed && !c.is_ascii_whitespace() {
            return Err("content after the closing </div>".into());
        }
        match c {
            b'&' => i = entity(b, i)?,
            b'<' => {
                let rest = &text[i..];
                if rest.starts_with("<!--") {
                    let end = rest.find("-->").ok_or("unterminated comment")?;
                    i += end + 3;
                } else if rest.starts_with("<![CDATA[") {
                    let end = rest.find("]]>").ok_or("unterminated CDATA section")?;
                    i += end + 3;
                } else if rest.starts_with("<?") {
                    let end = rest
                        .find("?>")
                        .ok_or("unterminated processing instruction")?;
                    i += end + 2;
                } else if rest.starts_with("<!") {
                    return Err("document type declarations are not allowed".into());
                } else if let Some(close) = rest.strip_prefix("</") {
                    let end = close.find('>').ok_or("unterminated end tag")?;
                    let name = close[..end].trim_end();
                    match stack.pop() {
                        Some(open) if open == name => {}
                        Some(open) => {
                            return Err(format!("</{name}> does not match <{open}>"));
                        }
                        None => return Err(format!("unexpected </{name}>")),
                    }
                    if stack.is_empty() {
                        root_closed = true;
                    }
                    i += 2 + end + 1;
                } else {
                    let (next, name, self_closing, has_ns) = start_tag(text, i)?;
                    if stack.is_empty() {
                        if name != "div" {
                            return Err(format!("the narrative root must be <div>, not <{name}>"));
                        }
                        root_ns = has_ns;
                    }
                    if self_closing {
                        if stack.is_empty() {
                            root_closed = true;
                        }
                    } else {
                        stack.push(name);
                    }
                    i = next;
                }
            }
            b'>' => {
                // A bare '>' is allowed in XML text.
                i += 1;
            }
            _ => i += 1,
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is not closed"));
    }
    if !root_ns {
        return Err(format!("the <div> must declare xmlns=\"{XHTML_NS}\""));
    }
    Ok(())
}

/// An entity reference starting at `b[i] == '&'`; returns the index after `;`.
fn entity(b: &[u8], i: usize) -> Result<usize, String> {
    let mut j = i + 1;
    let ok = if b.get(j) == Some(&b'#') {
        j += 1;
        let hex = matches!(b.get(j), Some(b'x' | b'X'));
        if hex {
            j += 1;
        }
        let start = j;
        while j < b.len()
            && (if hex {
                b[j].is_ascii_hexdigit()
            } else {
                b[j].is_ascii_digit()
            })
        {
            j += 1;
        }
        j > start
    } else {
        let start = j;
        while j < b.len() && b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        j > start && b[start].is_ascii_alphabetic()
    };
    if ok && b.get(j) == Some(&b';') {
        Ok(j + 1)
    } else {
        Err("'&' must start an entity reference such as &amp; (escape it as &amp;)".into())
    }
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b':' | b'.') || c >= 0x80
}

/// Parse a start tag at `text[i] == '<'`; returns (next index, element name, self-closing,
/// declares the XHTML namespace).
fn start_tag(text: &str, i: usize) -> Result<(usize, &str, bool, bool), String> {
    let b = text.as_bytes();
    let mut j = i + 1;
    let start = j;
    while j < b.len() && is_name_byte(b[j]) {
        j += 1;
    }
    if j == start || !(b[start].is_ascii_alphabetic() || b[start] == b'_') {
        return Err("'<' must start a tag (escape it as &lt;)".into());
    }
    let name = &text[start..j];
    let local = name.rsplit(':').next().unwrap_or(name);
    if FORBIDDEN_ELEMENTS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(local))
    {
        return Err(format!("<{name}> is not allowed in narrative"));
    }
    let mut has_ns = false;
    loop {
        let ws = j;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        match b.get(j) {
            None => return Err(format!("unterminated <{name}> tag")),
            Some(b'>') => return Ok((j + 1, name, false, has_ns)),
            Some(b'/') if b.get(j + 1) == Some(&b'>') => return Ok((j + 2, name, true, has_ns)),
            Some(_) if ws == j => return Err(format!("malformed <{name}> tag")),
            Some(_) => {}
        }
        let an = j;
        while j < b.len() && is_name_byte(b[j]) {
            j += 1;
        }
        if j == an {
            return Err(format!("malformed attribute in <{name}>"));
        }
        let attr = &text[an..j];
        if attr.len() > 2 && attr[..2].eq_ignore_ascii_case("on") {
            return Err(format!(
                "event attribute '{attr}' is not allowed in narrative"
            ));
        }
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            return Err(format!("attribute '{attr}' of <{name}> has no value"));
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let q = match b.get(j) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return Err(format!("attribute '{attr}' of <{name}> must be quoted")),
        };
        j += 1;
        let vs = j;
        while j < b.len() && b[j] != q {
            if b[j] == b'<' {
                return Err(format!("'<' in attribute '{attr}' of <{name}>"));
            }
            if b[j] == b'&' {
                j = entity(b, j)?;
                continue;
            }
            j += 1;
        }
        if j >= b.len() {
            return Err(format!("unterminated attribute '{attr}' of <{name}>"));
        }
        if attr == "xmlns" && &text[vs..j] == XHTML_NS {
            has_ns = true;
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_codes_uris() {
        assert!(is_id("a-B.9"));
        assert!(is_id(&"x".repeat(64)));
        assert!(!is_id(&"x".repeat(65)));
        assert!(!is_id("a_b"));
        assert!(!is_id(""));
        assert!(is_code("a b c"));
        assert!(!is_code(" a"));
        assert!(!is_code("a "));
        assert!(!is_code("a  b"));
        assert!(!is_code("a\tb"));
        assert!(no_whitespace("http://x/y"));
        assert!(!no_whitespace("http://x/ y"));
    }

    #[test]
    fn oid_uuid_base64_decimal() {
        assert!(is_oid("urn:oid:1.2.840.113619"));
        assert!(!is_oid("urn:oid:3.2"));
        assert!(!is_oid("urn:oid:1"));
        assert!(!is_oid("urn:oid:1.02"));
        assert!(is_uuid("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"));
        assert!(!is_uuid("urn:uuid:C757873D-EC9A-4326-A141-556F43239520"));
        assert!(!is_uuid("c757873d-ec9a-4326-a141-556f43239520"));
        assert!(is_base64("aGVsbG8="));
        assert!(is_base64("aGVs\n bG8h"));
        assert!(is_base64("a+/="));
        assert!(!is_base64("aGVsbG8"));
        assert!(!is_base64("aGV=bG8="));
        assert!(!is_base64("aGVsbG8*"));
        for ok in ["0", "-1.50", "1e10", "1.5E-3", "0.0"] {
            assert!(is_decimal_text(ok), "{ok}");
        }
        for bad in ["01", "1.", ".5", "1e", "+1", "", "1.5.5"] {
            assert!(!is_decimal_text(bad), "{bad}");
        }
    }

    #[test]
    fn dates_and_times() {
        for ok in ["2020", "2020-02", "2020-02-29", "2000-02-29"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "0000",
            "2020-13",
            "2021-02-29",
            "1900-02-29",
            "2020-1",
            "20",
            "2020-02-30",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
        for ok in [
            "2020",
            "2020-02-03",
            "2020-02-03T10:11:12Z",
            "2020-02-03T10:11:12.123+09:00",
            "2020-02-03T23:59:60-14:00",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "2020-02-03T10:11:12",
            "2020-02-03T10:11Z",
            "2020-02T10:11:12Z",
            "2020-02-03T24:00:00Z",
            "2020-02-03T10:11:12+15:00",
            "2020-02-03 10:11:12Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        assert!(is_instant("2020-02-03T10:11:12.5Z"));
        assert!(!is_instant("2020-02-03"));
        assert!(!is_instant("2020-02-03T10:11:12"));
        assert!(is_time("10:11:12"));
        assert!(is_time("10:11:12.123"));
        assert!(!is_time("10:11"));
        assert!(!is_time("10:11:12Z"));
    }

    #[test]
    fn xhtml_narrative() {
        let ns = "xmlns=\"http://www.w3.org/1999/xhtml\"";
        assert!(
            check_xhtml(&format!(
                "<div {ns}>Hi <b>there</b> &amp; &#160;<br/></div>"
            ))
            .is_ok()
        );
        assert!(
            check_xhtml(&format!(
                "<div {ns}><!-- c --><p class='x'>a &gt; b</p></div>"
            ))
            .is_ok()
        );
        assert!(check_xhtml("<div>no namespace</div>").is_err());
        assert!(check_xhtml(&format!("<p {ns}>x</p>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}><b>x</div>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}><b>x</i></b></div>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}><script>x()</script></div>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}><a onclick=\"x()\">a</a></div>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}>a & b</div>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}>a < b</div>")).is_err());
        assert!(check_xhtml(&format!("<div {ns}>a</div>trailing")).is_err());
        assert!(check_xhtml(&format!("<div {ns}><p a=b>x</p></div>")).is_err());
    }
}
