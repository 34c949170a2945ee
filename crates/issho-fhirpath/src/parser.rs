//! Lexer and precedence-climbing parser producing the [`Expr`] tree.

use crate::Error;
use crate::datetime::PartialDateTime;
use crate::decimal::Decimal;
use crate::value::{Quantity, Val};
use std::borrow::Cow;

/// A parsed FHIRPath expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// `{}`
    Empty,
    Literal(Val<'static>),
    /// An identifier at the start of a path, evaluated against the input collection.
    Ident(String),
    /// `target.name`
    Member(Box<Expr>, String),
    /// `target.name(args)`, or `name(args)` on the input collection when `target` is `None`.
    Call {
        target: Option<Box<Expr>>,
        name: String,
        args: Vec<Expr>,
    },
    /// `target[index]`
    Index(Box<Expr>, Box<Expr>),
    /// Unary `-` (`true`) or `+` (`false`).
    Negate(Box<Expr>, bool),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `expr is Type` (`true`) or `expr as Type` (`false`).
    TypeOp(Box<Expr>, TypeSpec, bool),
    This,
    IndexVar,
    Total,
    /// `%name`
    Var(String),
}

/// A type specifier: optional namespace (`FHIR`, `System`) and type name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// Backtick-delimited identifier (never a keyword).
    Delim(String),
    Str(String),
    Num(String),
    Date(String),
    DateTime(String),
    Time(String),
    Var(String),
    Dollar(String),
    Sym(&'static str),
    Eof,
}

struct Lexer<'s> {
    s: &'s str,
    b: &'s [u8],
    pos: usize,
}

fn perr(msg: impl Into<String>) -> Error {
    Error::Parse(msg.into())
}

impl<'s> Lexer<'s> {
    fn skip_ws(&mut self) -> Result<(), Error> {
        loop {
            while self.pos < self.b.len() && self.b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.s[self.pos..].starts_with("//") {
                while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if self.s[self.pos..].starts_with("/*") {
                match self.s[self.pos + 2..].find("*/") {
                    Some(e) => self.pos += 2 + e + 2,
                    None => return Err(perr("unterminated comment")),
                }
            } else {
                return Ok(());
            }
        }
    }

    fn digits(&mut self) -> usize {
        let st = self.pos;
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        self.pos - st
    }

    fn at(&self, i: usize) -> u8 {
        *self.b.get(i).unwrap_or(&0)
    }

    fn quoted(&mut self, q: u8) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.s[self.pos..].chars().next() else {
                return Err(perr("unterminated string"));
            };
            self.pos += c.len_utf8();
            if c as u32 == q as u32 {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.s[self.pos..].chars().next() else {
                return Err(perr("unterminated string"));
            };
            self.pos += e.len_utf8();
            match e {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex = self
                        .s
                        .get(self.pos..self.pos + 4)
                        .ok_or_else(|| perr("bad \\u escape"))?;
                    let cp = u32::from_str_radix(hex, 16).map_err(|_| perr("bad \\u escape"))?;
                    out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    self.pos += 4;
                }
                other => out.push(other),
            }
        }
    }

    /// The text of a date/time literal after `@`.
    fn datetime_literal(&mut self) -> Result<Tok, Error> {
        let st = self.pos;
        if self.at(self.pos) == b'T' {
            self.pos += 1;
            self.time_part();
            return Ok(Tok::Time(self.s[st + 1..self.pos].to_string()));
        }
        if self.digits() != 4 {
            return Err(perr("bad date literal"));
        }
        for _ in 0..2 {
            if self.at(self.pos) == b'-' && self.at(self.pos + 1).is_ascii_digit() {
                self.pos += 1;
                self.digits();
            }
        }
        if self.at(self.pos) == b'T' {
            self.pos += 1;
            if self.at(self.pos).is_ascii_digit() {
                self.time_part();
                // zone
                let c = self.at(self.pos);
                if c == b'Z' {
                    self.pos += 1;
                } else if (c == b'+' || c == b'-')
                    && self.at(self.pos + 1).is_ascii_digit()
                    && self.at(self.pos + 2).is_ascii_digit()
                    && self.at(self.pos + 3) == b':'
                {
                    self.pos += 6;
                }
            }
            return Ok(Tok::DateTime(self.s[st..self.pos].to_string()));
        }
        Ok(Tok::Date(self.s[st..self.pos].to_string()))
    }

    fn time_part(&mut self) {
        self.digits();
        for _ in 0..2 {
            if self.at(self.pos) == b':' && self.at(self.pos + 1).is_ascii_digit() {
                self.pos += 1;
                self.digits();
            }
        }
        if self.at(self.pos) == b'.' && self.at(self.pos + 1).is_ascii_digit() {
            self.pos += 1;
            self.digits();
        }
    }

    fn ident(&mut self) -> String {
        let st = self.pos;
        while self.pos < self.b.len()
            && (self.b[self.pos].is_ascii_alphanumeric() || self.b[self.pos] == b'_')
        {
            self.pos += 1;
        }
        self.s[st..self.pos].to_string()
    }

    fn next(&mut self) -> Result<Tok, Error> {
        self.skip_ws()?;
        if self.pos >= self.b.len() {
            return Ok(Tok::Eof);
        }
        let c = self.b[self.pos];
        match c {
            b'\'' => Ok(Tok::Str(self.quoted(b'\'')?)),
            b'`' => Ok(Tok::Delim(self.quoted(b'`')?)),
            b'@' => {
                self.pos += 1;
                self.datetime_literal()
            }
            b'%' => {
                self.pos += 1;
                match self.at(self.pos) {
                    b'`' => Ok(Tok::Var(self.quoted(b'`')?)),
                    b'\'' => Ok(Tok::Var(self.quoted(b'\'')?)),
                    _ => {
                        let id = self.ident();
                        if id.is_empty() {
                            Err(perr("bad %variable"))
                        } else {
                            Ok(Tok::Var(id))
                        }
                    }
                }
            }
            b'$' => {
                self.pos += 1;
                Ok(Tok::Dollar(self.ident()))
            }
            b'0'..=b'9' => {
                let st = self.pos;
                self.digits();
                if self.at(self.pos) == b'.' && self.at(self.pos + 1).is_ascii_digit() {
                    self.pos += 1;
                    self.digits();
                }
                let text = self.s[st..self.pos].to_string();
                // Long literal (`2L`), read as an Integer.
                if self.at(self.pos) == b'L'
                    && !text.contains('.')
                    && !(self.at(self.pos + 1).is_ascii_alphanumeric()
                        || self.at(self.pos + 1) == b'_')
                {
                    self.pos += 1;
                }
                Ok(Tok::Num(text))
            }
            c if c.is_ascii_alphabetic() || c == b'_' => Ok(Tok::Ident(self.ident())),
            _ => {
                const SYMS: [&str; 23] = [
                    "!=", "!~", "<=", ">=", "=", "~", "<", ">", "+", "-", "*", "/", "&", "|", "(",
                    ")", "[", "]", "{", "}", ".", ",", ":",
                ];
                for s in SYMS {
                    if self.s[self.pos..].starts_with(s) {
                        self.pos += s.len();
                        return Ok(Tok::Sym(s));
                    }
                }
                Err(perr(format!(
                    "unexpected character {:?} at {}",
                    self.s[self.pos..].chars().next().unwrap_or(' '),
                    self.pos
                )))
            }
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Nesting depth of the recursive descent, bounded by [`MAX_DEPTH`].
    depth: usize,
}

/// Deepest nesting of an expression (parentheses, unary operators, arguments) accepted:
/// real expressions stay far below; a deeper one is refused instead of exhausting the stack
/// (the parser and the evaluator both recurse per level).
pub const MAX_DEPTH: usize = 100;

/// Most tokens an expression may have. Chains (`a.b.c…`, `x | y | …`) build left-nested trees
/// that the evaluator walks recursively, so their length is bounded too. The longest R4
/// search-parameter expression has about 330 tokens.
pub const MAX_TOKENS: usize = 1_000;

const CALENDAR: [(&str, &str); 16] = [
    ("year", "year"),
    ("years", "year"),
    ("month", "month"),
    ("months", "month"),
    ("week", "week"),
    ("weeks", "week"),
    ("day", "day"),
    ("days", "day"),
    ("hour", "hour"),
    ("hours", "hour"),
    ("minute", "minute"),
    ("minutes", "minute"),
    ("second", "second"),
    ("seconds", "second"),
    ("millisecond", "millisecond"),
    ("milliseconds", "millisecond"),
];

/// The singular calendar keyword for `days`, `week`, …
pub(crate) fn calendar_unit(word: &str) -> Option<&'static str> {
    CALENDAR.iter().find(|(w, _)| *w == word).map(|(_, u)| *u)
}

fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Sym(s) => match *s {
            "*" => (BinOp::Mul, 10),
            "/" => (BinOp::Div, 10),
            "+" => (BinOp::Add, 9),
            "-" => (BinOp::Sub, 9),
            "&" => (BinOp::Concat, 9),
            "|" => (BinOp::Union, 7),
            "<" => (BinOp::Lt, 6),
            ">" => (BinOp::Gt, 6),
            "<=" => (BinOp::Le, 6),
            ">=" => (BinOp::Ge, 6),
            "=" => (BinOp::Eq, 5),
            "!=" => (BinOp::Ne, 5),
            "~" => (BinOp::Equiv, 5),
            "!~" => (BinOp::NotEquiv, 5),
            _ => return None,
        },
        Tok::Ident(s) => match s.as_str() {
            "div" => (BinOp::IntDiv, 10),
            "mod" => (BinOp::Mod, 10),
            "in" => (BinOp::In, 4),
            "contains" => (BinOp::Contains, 4),
            "and" => (BinOp::And, 3),
            "or" => (BinOp::Or, 2),
            "xor" => (BinOp::Xor, 2),
            "implies" => (BinOp::Implies, 1),
            _ => return None,
        },
        _ => return None,
    })
}

const TYPE_OP_PREC: u8 = 8;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }

    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, s: &'static str) -> Result<(), Error> {
        if self.peek() == &Tok::Sym(s) {
            self.bump();
            Ok(())
        } else {
            Err(perr(format!("expected '{s}', found {:?}", self.peek())))
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, Error> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            if let Tok::Ident(w) = &t
                && (w == "is" || w == "as")
            {
                if TYPE_OP_PREC < min {
                    break;
                }
                self.bump();
                let spec = self.type_spec()?;
                lhs = Expr::TypeOp(Box::new(lhs), spec, w == "is");
                continue;
            }
            let Some((op, prec)) = binop(&t) else { break };
            if prec < min {
                break;
            }
            self.bump();
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, Error> {
        let first = self.identifier()?;
        if self.peek() == &Tok::Sym(".") {
            self.bump();
            let second = self.identifier()?;
            Ok(TypeSpec {
                namespace: Some(first),
                name: second,
            })
        } else {
            Ok(TypeSpec {
                namespace: None,
                name: first,
            })
        }
    }

    fn identifier(&mut self) -> Result<String, Error> {
        match self.bump() {
            Tok::Ident(s) | Tok::Delim(s) => Ok(s),
            t => Err(perr(format!("expected an identifier, found {t:?}"))),
        }
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(perr(format!(
                "the expression is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        let out = self.unary_inner();
        self.depth -= 1;
        out
    }

    fn unary_inner(&mut self) -> Result<Expr, Error> {
        match self.peek() {
            Tok::Sym("-") => {
                self.bump();
                Ok(Expr::Negate(Box::new(self.unary()?), true))
            }
            Tok::Sym("+") => {
                self.bump();
                Ok(Expr::Negate(Box::new(self.unary()?), false))
            }
            _ => self.postfix(),
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, Error> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() == &Tok::Sym(")") {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.bump() {
                Tok::Sym(",") => {}
                Tok::Sym(")") => return Ok(args),
                t => return Err(perr(format!("expected ',' or ')', found {t:?}"))),
            }
        }
    }

    fn postfix(&mut self) -> Result<Expr, Error> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Tok::Sym(".") => {
                    self.bump();
                    let name = self.identifier()?;
                    if self.peek() == &Tok::Sym("(") {
                        let args = self.args()?;
                        e = Expr::Call {
                            target: Some(Box::new(e)),
                            name,
                            args,
                        };
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Tok::Sym("[") => {
                    self.bump();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, Error> {
        match self.bump() {
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Str(s) => Ok(Expr::Literal(Val::String(Cow::Owned(s)))),
            Tok::Num(n) => {
                // A quantity: number followed by a unit string or a calendar keyword.
                let unit = match self.peek() {
                    Tok::Str(u) => Some((u.clone(), false)),
                    Tok::Ident(w) => calendar_unit(w).map(|u| (u.to_string(), true)),
                    _ => None,
                };
                let d = Decimal::parse(&n).ok_or_else(|| perr("bad number"))?;
                if let Some((unit, calendar)) = unit {
                    self.bump();
                    return Ok(Expr::Literal(Val::Quantity(Quantity {
                        value: d,
                        unit,
                        calendar,
                    })));
                }
                if n.contains('.') {
                    Ok(Expr::Literal(Val::Decimal(d)))
                } else {
                    let i: i64 = n.parse().map_err(|_| perr("integer literal too large"))?;
                    Ok(Expr::Literal(Val::Integer(i)))
                }
            }
            Tok::Date(s) => PartialDateTime::parse_date(&s)
                .map(|d| Expr::Literal(Val::Date(d)))
                .ok_or_else(|| perr(format!("bad date @{s}"))),
            Tok::DateTime(s) => PartialDateTime::parse_datetime(s.trim_end_matches('T'))
                .map(|d| Expr::Literal(Val::DateTime(d)))
                .ok_or_else(|| perr(format!("bad date-time @{s}"))),
            Tok::Time(s) => PartialDateTime::parse_time(&s)
                .map(|d| Expr::Literal(Val::Time(d)))
                .ok_or_else(|| perr(format!("bad time @T{s}"))),
            Tok::Var(v) => Ok(Expr::Var(v)),
            Tok::Dollar(d) => match d.as_str() {
                "this" => Ok(Expr::This),
                "index" => Ok(Expr::IndexVar),
                "total" => Ok(Expr::Total),
                _ => Err(perr(format!("unknown variable ${d}"))),
            },
            Tok::Delim(s) => Ok(Expr::Ident(s)),
            Tok::Ident(s) => {
                if self.peek() == &Tok::Sym("(") {
                    let args = self.args()?;
                    return Ok(Expr::Call {
                        target: None,
                        name: s,
                        args,
                    });
                }
                match s.as_str() {
                    "true" => Ok(Expr::Literal(Val::Boolean(true))),
                    "false" => Ok(Expr::Literal(Val::Boolean(false))),
                    "and" | "or" | "xor" | "implies" | "div" | "mod" => {
                        Err(perr(format!("unexpected keyword '{s}'")))
                    }
                    _ => Ok(Expr::Ident(s)),
                }
            }
            t => Err(perr(format!("unexpected {t:?}"))),
        }
    }
}

/// Parse a FHIRPath expression.
pub fn parse(src: &str) -> Result<Expr, Error> {
    // Each nesting level goes through `unary`, which counts it.
    let mut lx = Lexer {
        s: src,
        b: src.as_bytes(),
        pos: 0,
    };
    let mut toks = Vec::new();
    loop {
        let t = lx.next()?;
        let end = t == Tok::Eof;
        toks.push(t);
        if toks.len() > MAX_TOKENS {
            return Err(perr(format!(
                "the expression is longer than {MAX_TOKENS} tokens"
            )));
        }
        if end {
            break;
        }
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(perr(format!("unexpected {:?} after expression", p.peek())));
    }
    Ok(e)
}

#[cfg(test)]
mod depth_tests {
    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(super::parse(&deep).is_err());
        let minus = format!("{}1", "-".repeat(100_000));
        assert!(super::parse(&minus).is_err());
        let args = format!("{}1{}", "iif(true,".repeat(50_000), ",0)".repeat(50_000));
        assert!(super::parse(&args).is_err());
        assert!(super::parse("((1 + 2)) * -(3)").is_ok());
    }
}

#[cfg(test)]
mod chain_tests {
    #[test]
    fn long_chains_are_bounded() {
        let long = format!("Patient{}", ".name".repeat(100_000));
        match super::parse(&long) {
            Err(_) => {}
            Ok(e) => {
                let v = serde_json::json!({"resourceType": "Patient"});
                let _ = crate::evaluate(&e, &v, &crate::Context::new());
            }
        }
        // a long chain (200 levels) evaluates; the writer thread that runs patches has 16 MiB
        let near = format!("Patient{}", ".name".repeat(200));
        let e = super::parse(&near).unwrap();
        let v = serde_json::json!({"resourceType": "Patient"});
        assert!(crate::evaluate(&e, &v, &crate::Context::new()).is_ok());
        let ops = format!("1{}", " + 1".repeat(100_000));
        if let Ok(e) = super::parse(&ops) {
            let v = serde_json::json!({});
            let _ = crate::evaluate(&e, &v, &crate::Context::new());
        }
    }
}
