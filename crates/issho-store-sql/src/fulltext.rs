//! Full-text terms (issho-search's phrases) as FTS5 queries (SQLite) and `tsquery`s
//! (PostgreSQL): the same phrases, tokens and prefixes in each engine's syntax.

use issho_search::Phrase;

/// An FTS5 string literal (double quotes, inner quotes doubled).
fn fts5_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Alternatives joined by `or`, each the phrases joined by `and` (each phrase rendered by
/// `phrase`); alternatives are parenthesised when there are several, or always with `wrap`.
fn render(
    terms: &[Vec<Phrase>],
    phrase: impl Fn(&Phrase) -> String,
    and: &str,
    or: &str,
    wrap: bool,
) -> String {
    let alternatives: Vec<String> = terms
        .iter()
        .map(|phrases| phrases.iter().map(&phrase).collect::<Vec<_>>().join(and))
        .collect();
    match alternatives.as_slice() {
        [one] if !wrap => one.clone(),
        _ => alternatives
            .iter()
            .map(|a| format!("({a})"))
            .collect::<Vec<_>>()
            .join(or),
    }
}

/// The FTS5 query of full-text terms: alternatives ORed, the phrases of one ANDed; every
/// phrase is one quoted string of its tokens (a trailing ` *` for a prefix), so nothing of the
/// searched value acts as FTS5 syntax.
pub fn fts5_query(terms: &[Vec<Phrase>]) -> String {
    let phrase = |p: &Phrase| {
        let mut t = fts5_quote(&p.tokens.join(" "));
        if p.prefix {
            t.push_str(" *");
        }
        t
    };
    render(terms, phrase, " AND ", " OR ", false)
}

/// A `tsquery` lexeme literal (single quotes; quotes and backslashes doubled/escaped).
fn ts_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `tsquery` of full-text terms (cast from text, so no lexeme is normalised again): a
/// phrase's tokens follow each other (`<->`), a prefix is `:*`, phrases `&`, alternatives `|`.
pub fn tsquery(terms: &[Vec<Phrase>]) -> String {
    let phrase = |p: &Phrase| {
        let n = p.tokens.len();
        let words: Vec<String> = p
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut w = ts_quote(t);
                if p.prefix && i + 1 == n {
                    w.push_str(":*");
                }
                w
            })
            .collect();
        format!("({})", words.join(" <-> "))
    };
    render(terms, phrase, " & ", " | ", true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use issho_search::fulltext::text_terms;

    fn terms(values: &[&str]) -> Vec<Vec<Phrase>> {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        text_terms(&v).unwrap()
    }

    #[test]
    fn fts5() {
        let q = |v: &[&str]| fts5_query(&terms(v));
        assert_eq!(q(&["糖尿病"]), "\"糖尿 尿病\"");
        assert_eq!(q(&["糖"]), "\"糖\" *");
        assert_eq!(q(&["2型"]), "\"2 型\" *");
        assert_eq!(q(&["Diabetes  mellitus"]), "\"diabetes\" AND \"mellitus\"");
        assert_eq!(q(&["a b", "c"]), "(\"a\" AND \"b\") OR (\"c\")");
        assert_eq!(q(&["foo\" OR \"bar"]), "\"foo\" AND \"or\" AND \"bar\"");
        assert_eq!(q(&["NEAR(a b)"]), "\"near a\" AND \"b\"");
    }

    #[test]
    fn tsqueries() {
        let q = |v: &[&str]| tsquery(&terms(v));
        assert_eq!(q(&["糖尿病"]), "(('糖尿' <-> '尿病'))");
        assert_eq!(q(&["糖"]), "(('糖':*))");
        assert_eq!(q(&["2型"]), "(('2' <-> '型':*))");
        assert_eq!(q(&["Diabetes  mellitus"]), "(('diabetes') & ('mellitus'))");
        assert_eq!(q(&["a b", "c"]), "(('a') & ('b')) | (('c'))");
        // Nothing is tsquery syntax: operators and quotes are text or separators.
        assert_eq!(q(&["a&b|!c"]), "(('a' <-> 'b' <-> 'c'))");
        assert_eq!(q(&["it's"]), "(('it' <-> 's'))");
    }
}
