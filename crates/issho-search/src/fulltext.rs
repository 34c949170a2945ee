//! Full-text search for `_text` (the narrative) and `_content` (all the text of a resource).
//!
//! The store's text index (SQLite FTS5, PostgreSQL `tsvector`) keeps the words; issho decides
//! what the words are, so that Japanese, which has no spaces, is searchable. Text is normalised like string search ([`normalize`]: NFKC,
//! lower case, Latin diacritics removed) and cut into tokens:
//!
//! - a run of letters and digits of other scripts is one word (`hba1c`, `diabetes`);
//! - a run of CJK characters (kanji, kana, hangul) becomes its overlapping character bigrams
//!   followed by its last character alone: `型糖尿病` → `型糖 糖尿 尿病 病`. The bigrams find
//!   any substring of two or more characters as a phrase (`糖尿病` = the phrase `糖尿 尿病`);
//!   the trailing unigram lets a single character be found where it ends a run, and keeps a
//!   phrase that continues after the run (`糖尿x`) adjacent;
//! - everything else (spaces, punctuation, symbols) separates tokens and is never searched.
//!
//! The tokens reach the store space-separated ([`Row::Text`]); each backend keeps exactly these
//! tokens (no stemming, no tokenizer of its own that could split them differently).
//!
//! A search value is a list of terms separated by spaces, all of which must occur (AND); the
//! values of one parameter separated by commas are alternatives (OR). A term becomes a
//! [`Phrase`] of its tokens ([`text_terms`]); each backend renders phrases in its own query
//! language with every token quoted, so no character of the value can act as syntax
//! (`"`, `*`, `OR`, `NEAR(`, `-`, `:` are text — or, being punctuation, separators).

use crate::extract::Row;
use crate::values::{normalize, parse_date_range};
use serde_json::Value;

/// Longest word kept, in characters (the same cut applies to indexed and searched words).
const MAX_WORD: usize = 64;

/// Which text a full-text search reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// `_text`: the narrative (`text.div`, tags removed).
    Narrative,
    /// `_content`: every text value of the resource (see [`text_row`]).
    Content,
}

impl TextField {
    /// The name of the store's column for this text (`narrative`, `content`).
    pub fn column(self) -> &'static str {
        match self {
            TextField::Narrative => "narrative",
            TextField::Content => "content",
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x3005..=0x3007    // 々 〆 〇
        | 0x3040..=0x30FF    // Hiragana, Katakana (ー included; punctuation is not alphanumeric)
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width Katakana (NFKC makes them full-width first)
        | 0x20000..=0x3134F  // CJK extensions B–G
    )
}

/// The runs of token characters of normalised text: (is CJK, run).
fn runs(norm: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    // The current run: its start and whether it is CJK.
    let mut open: Option<(usize, bool)> = None;
    for (i, c) in norm.char_indices() {
        let class = c.is_alphanumeric().then(|| is_cjk(c));
        if let Some((s, k)) = open
            && class != Some(k)
        {
            out.push((k, &norm[s..i]));
            open = None;
        }
        if open.is_none() {
            open = class.map(|k| (i, k));
        }
    }
    if let Some((s, k)) = open {
        out.push((k, &norm[s..]));
    }
    out
}

fn word(run: &str) -> &str {
    match run.char_indices().nth(MAX_WORD) {
        Some((i, _)) => &run[..i],
        None => run,
    }
}

fn push_token(out: &mut String, t: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(t);
}

/// Append the tokens of `text` (any text: normalised here) to `out`, space-separated.
pub(crate) fn push_index_tokens(text: &str, out: &mut String) {
    let norm = normalize(text);
    for (cjk, run) in runs(&norm) {
        if !cjk {
            push_token(out, word(run));
            continue;
        }
        let chars: Vec<(usize, char)> = run.char_indices().collect();
        for w in chars.windows(2) {
            let end = w[1].0 + w[1].1.len_utf8();
            push_token(out, &run[w[0].0..end]);
        }
        if let Some((i, _)) = chars.last() {
            push_token(out, &run[*i..]);
        }
    }
}

/// The tokens of `text`, space-separated (as indexed).
pub fn index_tokens(text: &str) -> String {
    let mut out = String::new();
    push_index_tokens(text, &mut out);
    out
}

/// One search term: its tokens, adjacent and in order, and whether the last one is a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub tokens: Vec<String>,
    pub prefix: bool,
}

/// The phrase of one term (no whitespace inside); `None` when it has no token characters.
fn term_phrase(term: &str) -> Option<Phrase> {
    let runs = runs(term);
    let mut p = Phrase {
        tokens: Vec::new(),
        prefix: false,
    };
    for (n, (cjk, run)) in runs.iter().enumerate() {
        let last = n + 1 == runs.len();
        if !cjk {
            p.tokens.push(word(run).to_string());
            continue;
        }
        let chars: Vec<(usize, char)> = run.char_indices().collect();
        if chars.len() == 1 {
            // One character: the unigram that ends an indexed run, or, at the end of the
            // term, also the first character of a bigram (a prefix).
            p.tokens.push(run.to_string());
            p.prefix = last;
            continue;
        }
        for w in chars.windows(2) {
            let end = w[1].0 + w[1].1.len_utf8();
            p.tokens.push(run[w[0].0..end].to_string());
        }
        // Followed by more of the term: the indexed run ends here too, with its unigram.
        if !last && let Some((i, _)) = chars.last() {
            p.tokens.push(run[*i..].to_string());
        }
    }
    if p.tokens.is_empty() { None } else { Some(p) }
}

/// The terms of the values of one `_text` / `_content` parameter (already split on unescaped
/// commas and unescaped): values ORed (the outer list), the phrases of a value ANDed. Errors
/// name the value without searchable text.
pub fn text_terms(values: &[String]) -> Result<Vec<Vec<Phrase>>, String> {
    let mut alternatives = Vec::new();
    for v in values {
        let norm = normalize(v);
        let terms: Vec<Phrase> = norm.split(' ').filter_map(term_phrase).collect();
        if terms.is_empty() {
            return Err(format!("'{v}' has no searchable text"));
        }
        alternatives.push(terms);
    }
    Ok(alternatives)
}

/// The full-text row of a resource: the tokens of its narrative and of its content; `None`
/// when it has neither.
///
/// Content is every string of the JSON tree except what is not text: `id`s, `meta`,
/// `resourceType`, references (`reference`), URIs (`url`, `system`, `fullUrl`, and any value
/// that starts with `http://`, `https://` or `urn:`), base64 and sampled data (`data`), dates
/// and times (values that parse as a FHIR date of month precision or finer), and the
/// narrative (searched by `_text`). Codes are text (`final`, `8480-6`), and so are displays.
pub(crate) fn text_row(resource: &Value) -> Option<Row> {
    let mut narrative = String::new();
    if let Some(div) = resource
        .get("text")
        .and_then(|t| t.get("div"))
        .and_then(Value::as_str)
    {
        push_index_tokens(&xhtml_text(div), &mut narrative);
    }
    let mut content = String::new();
    content_tokens(resource, &mut content);
    if narrative.is_empty() && content.is_empty() {
        return None;
    }
    Some(Row::Text { narrative, content })
}

fn content_tokens(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let skip = match k.as_str() {
                    "id" | "meta" | "resourceType" | "reference" | "url" | "system" | "fullUrl"
                    | "data" | "div" => true,
                    // A Narrative.
                    "text" => x.get("div").is_some(),
                    _ => false,
                };
                if !skip {
                    content_tokens(x, out);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                content_tokens(x, out);
            }
        }
        Value::String(s) if is_text(s) => push_index_tokens(s, out),
        _ => {}
    }
}

fn is_text(s: &str) -> bool {
    let uri = ["http://", "https://", "urn:"]
        .iter()
        .any(|p| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)));
    let date = s.len() >= 7 && s.as_bytes()[4] == b'-' && parse_date_range(s).is_some();
    !uri && !date
}

/// Inline XHTML elements: their tags do not separate words (`<b>高</b>血圧` is `高血圧`).
const INLINE: [&str; 24] = [
    "a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "del", "dfn", "em", "font", "i", "ins",
    "kbd", "mark", "q", "s", "small", "span", "strong", "sub", "sup", "u",
];

/// The text of an XHTML fragment: tags removed (block-level ones become line breaks, inline
/// ones nothing), comments removed, character references decoded.
pub(crate) fn xhtml_text(div: &str) -> String {
    let mut out = String::with_capacity(div.len());
    let mut rest = div;
    while let Some(lt) = rest.find('<') {
        decode_entities(&rest[..lt], &mut out);
        rest = &rest[lt..];
        if let Some(body) = rest.strip_prefix("<!--") {
            rest = match body.find("-->") {
                Some(e) => &body[e + 3..],
                None => "",
            };
            continue;
        }
        // The end of the tag (`>` outside quoted attribute values).
        let mut quote: Option<char> = None;
        let mut gt = None;
        for (i, c) in rest.char_indices().skip(1) {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '>') => {
                    gt = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let (tag, after) = match gt {
            Some(i) => (&rest[1..i], &rest[i + 1..]),
            None => (&rest[1..], ""),
        };
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if !INLINE.contains(&name.as_str()) {
            out.push('\n');
        }
        rest = after;
    }
    decode_entities(rest, &mut out);
    out
}

fn decode_entities(s: &str, out: &mut String) {
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&e| e <= 12).and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => {
                    let n = if let Some(h) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                        u32::from_str_radix(h, 16).ok()
                    } else if let Some(d) = name.strip_prefix('#') {
                        d.parse().ok()
                    } else {
                        None
                    };
                    n.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn japanese_bigrams() {
        assert_eq!(index_tokens("2型糖尿病"), "2 型糖 糖尿 尿病 病");
        assert_eq!(
            index_tokens("本態性高血圧症"),
            "本態 態性 性高 高血 血圧 圧症 症"
        );
        // A single character stays a unigram; punctuation separates runs.
        assert_eq!(index_tokens("型・糖"), "型 糖");
        // Kana and kanji form one run; the prolonged sound mark is a character.
        assert_eq!(index_tokens("インスリン注"), "イン ンス スリ リン ン注 注");
        assert_eq!(index_tokens("コーヒー"), "コー ーヒ ヒー ー");
        assert_eq!(index_tokens(""), "");
        assert_eq!(index_tokens("、。「」"), "");
    }

    #[test]
    fn widths_cases_and_accents() {
        // Full-width Latin and digits, half-width katakana: NFKC.
        assert_eq!(index_tokens("ＨｂＡ１ｃ　７．０％"), "hba1c 7 0");
        assert_eq!(index_tokens("ｲﾝｽﾘﾝ"), index_tokens("インスリン"));
        assert_eq!(index_tokens("Café CRÈME naïve"), "cafe creme naive");
        // Voiced marks are not accents.
        assert_ne!(index_tokens("ガス"), index_tokens("カス"));
        // Mixed scripts split where the script changes.
        assert_eq!(
            index_tokens("COVID-19ワクチン"),
            "covid 19 ワク クチ チン ン"
        );
        // Very long words are cut, identically for the index and the search.
        let long = "x".repeat(100);
        assert_eq!(index_tokens(&long).chars().count(), MAX_WORD);
        assert_eq!(
            text_terms(&[long]).unwrap()[0][0].tokens,
            vec!["x".repeat(MAX_WORD)]
        );
    }

    #[test]
    fn terms() {
        let q = |v: &[&str]| {
            text_terms(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map(|alts| {
                alts.iter()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                format!("{}{}", p.tokens.join(" "), if p.prefix { "*" } else { "" })
                            })
                            .collect::<Vec<_>>()
                            .join(" & ")
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
        };
        assert_eq!(q(&["糖尿病"]).unwrap(), "糖尿 尿病");
        assert_eq!(q(&["糖"]).unwrap(), "糖*");
        assert_eq!(q(&["2型"]).unwrap(), "2 型*");
        assert_eq!(q(&["型糖x"]).unwrap(), "型糖 糖 x");
        assert_eq!(q(&["Diabetes  mellitus"]).unwrap(), "diabetes & mellitus");
        // Full-width space separates terms too.
        assert_eq!(q(&["高血圧　糖尿病"]).unwrap(), "高血 血圧 & 糖尿 尿病");
        assert_eq!(q(&["a b", "c"]).unwrap(), "a & b | c");
        assert_eq!(q(&["foo\" OR \"bar"]).unwrap(), "foo & or & bar");
        assert_eq!(q(&["NEAR(a b)"]).unwrap(), "near a & b");
        assert_eq!(q(&["{narrative}:x ^y"]).unwrap(), "narrative x & y");
        assert!(q(&["*"]).is_err());
        assert!(q(&["\""]).is_err());
        assert!(q(&["x", " - "]).is_err());
    }

    #[test]
    fn narrative_and_content() {
        let r = json!({
            "resourceType": "Condition", "id": "c1",
            "meta": {"versionId": "1", "profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>本態性<b>高血圧</b>症</p><p>Onset&#160;2019 &amp; <span title=\"a>b\">stable</span></p><!-- hidden --></div>"},
            "extension": [{"url": "http://example.org/ext", "valueString": "付記"}],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11", "display": "2型糖尿病"}], "text": "Type 2 diabetes"},
            "subject": {"reference": "Patient/p1", "display": "山田 太郎"},
            "onsetDateTime": "2019-04-01",
            "note": [{"text": "See https://example.org/x", "time": "2020-01-01T10:00:00Z"}]
        });
        let Some(Row::Text { narrative, content }) = text_row(&r) else {
            panic!("no text row")
        };
        assert_eq!(
            narrative,
            "本態 態性 性高 高血 血圧 圧症 症 onset 2019 stable"
        );
        let words: Vec<&str> = content.split(' ').collect();
        for w in [
            "付記", "active", "e11", "2", "型糖", "尿病", "type", "diabetes", "山田", "太郎", "see",
        ] {
            assert!(words.contains(&w), "{w} in {content}");
        }
        for w in [
            "c1",
            "condition",
            "p1",
            "patient",
            "generated",
            "http",
            "hl7",
            "2019",
            "04",
            "hidden",
            "jp",
        ] {
            assert!(!words.contains(&w), "{w} not in {content}");
        }
        assert_eq!(text_row(&json!({"resourceType": "Basic", "id": "x"})), None);
    }

    #[test]
    fn xhtml() {
        assert_eq!(xhtml_text("<div>a<br/>b</div>"), "\na\nb\n");
        assert_eq!(
            xhtml_text("<i>x</i>y &lt;z&gt; &#x41;&#66;&bogus;"),
            "xy <z> AB&bogus;"
        );
        assert_eq!(xhtml_text("a < b"), "a \n");
    }
}
