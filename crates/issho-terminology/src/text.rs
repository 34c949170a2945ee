//! Text matching for `$expand`'s `filter`: NFKC (full- and half-width agree), lower case,
//! and katakana read as hiragana, so that `ｱﾙﾌﾞﾐﾝ`, `アルブミン` and `あるぶみん` find the same
//! concept; a filter of several words matches when every word is found.

use unicode_normalization::UnicodeNormalization;

/// The folded form of `s`.
pub fn fold(s: &str) -> String {
    s.nfkc()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            // Katakana ァ..ヶ to hiragana ぁ..ゖ.
            '\u{30A1}'..='\u{30F6}' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Texts folded into one, separated so that no word spans two of them.
pub fn fold_all<'a>(texts: impl Iterator<Item = &'a str>) -> std::sync::Arc<str> {
    let mut out = String::new();
    for t in texts {
        out.push_str(&fold(t));
        out.push('\u{1f}');
    }
    out.into()
}

/// A parsed filter: its words, folded.
#[derive(Debug, Clone)]
pub struct Filter(Vec<String>);

impl Filter {
    pub fn new(text: &str) -> Filter {
        Filter(fold(text).split_whitespace().map(str::to_string).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every word is in `folded` (from [`fold_all`]).
    pub fn matches_folded(&self, folded: &str) -> bool {
        self.0.iter().all(|w| folded.contains(w.as_str()))
    }

    /// True when every word is in one of `texts`.
    pub fn matches<'a>(&self, texts: impl Iterator<Item = &'a str> + Clone) -> bool {
        let folded: Vec<String> = texts.map(fold).collect();
        self.0.iter().all(|w| folded.iter().any(|t| t.contains(w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_cases_and_kana_agree() {
        let f = Filter::new("ｱﾙﾌﾞﾐﾝ");
        assert!(f.matches(["アルブミン"].into_iter()));
        assert!(Filter::new("あるぶみん").matches(["血清アルブミン"].into_iter()));
        assert!(Filter::new("alb ＳＥＲＵＭ").matches(["ALB", "serum"].into_iter()));
        assert!(!Filter::new("alb plasma").matches(["ALB", "serum"].into_iter()));
        assert!(Filter::new("").is_empty());
    }
}
