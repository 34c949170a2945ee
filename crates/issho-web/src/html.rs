//! HTML written by hand: every text that comes from data goes through [`esc`]; a page is the
//! shell ([`page`]) around sections. No script: forms and links work without JavaScript, and
//! the Content-Security-Policy allows none.

use crate::i18n::{Lang, t};
use crate::session::Session;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The style sheet (`/web/static/issho.css`).
pub const CSS: &str = include_str!("../assets/issho.css");

/// A hidden CSRF field for a form of `s`'s session.
pub fn csrf(s: &Session) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(&s.csrf)
    )
}

/// A whole page: header (the app's name, the signed-in user, sign out, the language switch),
/// then `body`.
pub fn page(lang: Lang, title: &str, session: Option<&Session>, here: &str, body: &str) -> String {
    let user = match session {
        Some(s) => format!(
            r#"<span class="who">{} {}</span>
<form method="post" action="/web/signout" class="inline">{}<button type="submit">{}</button></form>"#,
            t(lang, "signed-in-as"),
            esc(&s.display),
            csrf(s),
            t(lang, "signout")
        ),
        None => format!(
            r#"<a class="button" href="/web/signin">{}</a>"#,
            t(lang, "signin")
        ),
    };
    let other = lang.other();
    format!(
        r##"<!doctype html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — issho</title>
<link rel="stylesheet" href="/web/static/issho.css">
</head>
<body>
<a class="skip" href="#main">{skip}</a>
<header>
<a class="brand" href="/">issho <span lang="ja">一生</span></a>
<nav aria-label="account">{user}
<a href="/web/lang/{other}?back={here}" lang="{other}" hreflang="{other}">{switch}</a></nav>
</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"##,
        code = lang.code(),
        title = esc(title),
        skip = t(lang, "skip"),
        other = other.code(),
        here = esc(here),
        switch = t(lang, "lang-switch"),
    )
}

/// A section with a heading.
pub fn section(id: &str, heading: &str, inner: &str) -> String {
    format!(
        r#"<section id="{id}" aria-labelledby="{id}-h"><h2 id="{id}-h">{}</h2>
{inner}
</section>
"#,
        esc(heading)
    )
}

/// A paragraph of plain text.
pub fn p(text: &str) -> String {
    format!("<p>{}</p>\n", esc(text))
}

/// A table: header cells, then rows of already-escaped cells.
pub fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("<table>\n<caption>{}</caption>\n<thead><tr>", esc(caption));
    for h in head {
        s.push_str(&format!(r#"<th scope="col">{}</th>"#, esc(h)));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{c}</td>"));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }
}
