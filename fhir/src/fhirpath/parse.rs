//! FHIRPath (N1, as R4 uses it) text to syntax tree: a lexer and a
//! precedence-climbing parser over the grammar of the specification.

use super::number::Decimal;
use std::fmt;

/// A calendar duration keyword (`7 days`), as its singular.
pub(super) fn calendar_unit(word: &str) -> Option<&'static str> {
    CALENDAR_UNITS.iter().find(|(unit, _)| word.strip_suffix('s').unwrap_or(word) == *unit).map(|(unit, _)| *unit)
}

/// Each calendar duration and the UCUM unit it equals: a week, a day...
/// are definite; a year and a month are calendar units no UCUM unit
/// equals (FHIRPath N1 §2.1.13.1.6).
pub(super) const CALENDAR_UNITS: &[(&str, Option<&str>)] = &[
    ("year", None),
    ("month", None),
    ("week", Some("wk")),
    ("day", Some("d")),
    ("hour", Some("h")),
    ("minute", Some("min")),
    ("second", Some("s")),
    ("millisecond", Some("ms")),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Empty,
    Bool(bool),
    Str(String),
    Int(i64),
    Dec(Decimal),
    /// `@2020-01-01`, `@2020-01-01T10:00:00Z`, `@T10:00`: the text after `@`.
    DateTime(String),
    Quantity(f64, String),
    This,
    Index,
    Total,
    /// `%resource`, `%ucum`, `%`vs-name``: the name after `%`.
    Var(String),
    /// A member name applied to the focus (`name`, `` `div` ``).
    Member(Option<Box<Ast>>, String),
    /// A function applied to the focus (`exists()`, `a.where(b)`).
    Call(Option<Box<Ast>>, String, Vec<Ast>),
    Indexer(Box<Ast>, Box<Ast>),
    Negate(Box<Ast>),
    Binary(Op, Box<Ast>, Box<Ast>),
    /// `x is T` (true) and `x as T` (false).
    Type(bool, Box<Ast>, String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
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

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Quoted(String),
    Str(String),
    Num(String),
    DateTime(String),
    Var(String),
    Special(String),
    Sym(&'static str),
}

const SYMBOLS: [&str; 20] =
    ["<=", ">=", "!=", "!~", ".", "(", ")", "[", "]", "{", "}", ",", "=", "~", "<", ">", "|", "&", "+", "-"];

fn lex(src: &str) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |m: &str| Err(ParseError(m.to_owned()));
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            if i + 1 >= chars.len() {
                return Err(ParseError("an unterminated comment".into()));
            }
            i += 2;
        } else if c == '\'' || c == '`' {
            let (text, next) = quoted(&chars, i)?;
            out.push(if c == '\'' { Tok::Str(text) } else { Tok::Quoted(text) });
            i = next;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c == '@' {
            let start = i + 1;
            i += 1;
            // Digits and the separators of a date, time and offset; a `.`
            // only before a fraction's digits (`@2015.is(Date)` calls).
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || matches!(chars[i], '-' | ':' | '+' | 'T' | 'Z')
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push(Tok::DateTime(chars[start..i].iter().collect()));
        } else if c == '%' || c == '$' {
            i += 1;
            let name = if matches!(chars.get(i), Some('`' | '\'')) {
                let (text, next) = quoted(&chars, i)?;
                i = next;
                text
            } else {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                chars[start..i].iter().collect()
            };
            if name.is_empty() {
                return err("a variable needs a name");
            }
            out.push(if c == '%' { Tok::Var(name) } else { Tok::Special(name) });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c == '*' || c == '/' {
            out.push(Tok::Sym(if c == '*' { "*" } else { "/" }));
            i += 1;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match SYMBOLS.iter().find(|s| rest.starts_with(*s)) {
                Some(s) => {
                    out.push(Tok::Sym(s));
                    i += s.len();
                }
                None => return Err(ParseError(format!("unexpected character '{c}'"))),
            }
        }
    }
    Ok(out)
}

fn quoted(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let q = chars[open];
    let mut i = open + 1;
    let mut s = String::new();
    while i < chars.len() && chars[i] != q {
        if chars[i] == '\\' && i + 1 < chars.len() {
            i += 1;
            let c = match chars[i] {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'f' => '\u{c}',
                'u' if i + 4 < chars.len() => {
                    let hex: String = chars[i + 1..i + 5].iter().collect();
                    i += 4;
                    u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('\u{fffd}')
                }
                // `\\`, `\'`, `\"`, `` \` ``, `\/`; other escapes keep the backslash for regexes.
                c @ ('\\' | '\'' | '"' | '`' | '/') => c,
                c => {
                    s.push('\\');
                    c
                }
            };
            s.push(c);
        } else {
            s.push(chars[i]);
        }
        i += 1;
    }
    if i >= chars.len() {
        return Err(ParseError("unterminated string".into()));
    }
    Ok((s, i + 1))
}

/// Binary operators by precedence level, loosest first.
fn binary_op(t: &Tok) -> Option<(u8, Op)> {
    let (word, sym) = match t {
        Tok::Ident(w) => (w.as_str(), ""),
        Tok::Sym(s) => ("", *s),
        _ => return None,
    };
    Some(match (word, sym) {
        ("implies", _) => (1, Op::Implies),
        ("or", _) => (2, Op::Or),
        ("xor", _) => (2, Op::Xor),
        ("and", _) => (3, Op::And),
        ("in", _) => (4, Op::In),
        ("contains", _) => (4, Op::Contains),
        (_, "=") => (5, Op::Eq),
        (_, "!=") => (5, Op::Ne),
        (_, "~") => (5, Op::Equiv),
        (_, "!~") => (5, Op::NotEquiv),
        (_, "<") => (6, Op::Lt),
        (_, ">") => (6, Op::Gt),
        (_, "<=") => (6, Op::Le),
        (_, ">=") => (6, Op::Ge),
        (_, "|") => (7, Op::Union),
        (_, "+") => (9, Op::Add),
        (_, "-") => (9, Op::Sub),
        (_, "&") => (9, Op::Concat),
        (_, "*") => (10, Op::Mul),
        (_, "/") => (10, Op::Div),
        ("div", _) => (10, Op::IntDiv),
        ("mod", _) => (10, Op::Mod),
        _ => return None,
    })
}

/// Level of `is` / `as`, between union and additive operators.
const TYPE_LEVEL: u8 = 8;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Parses one expression.
pub fn parse(src: &str) -> Result<Ast, ParseError> {
    let mut p = Parser { toks: lex(src)?, pos: 0 };
    let ast = p.expr(0)?;
    match p.toks.get(p.pos) {
        None => Ok(ast),
        Some(t) => Err(ParseError(format!("unexpected {t:?}"))),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        match self.next() {
            Some(Tok::Sym(x)) if x == s => Ok(()),
            other => Err(ParseError(format!("expected '{s}', found {other:?}"))),
        }
    }

    fn expr(&mut self, min: u8) -> Result<Ast, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(t) = self.peek() {
            if let Tok::Ident(w) = t {
                if (w == "is" || w == "as") && TYPE_LEVEL >= min {
                    let is = w == "is";
                    self.pos += 1;
                    let ty = self.type_name()?;
                    lhs = Ast::Type(is, Box::new(lhs), ty);
                    continue;
                }
            }
            let Some((level, op)) = binary_op(t) else { break };
            if level < min {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(level + 1)?;
            lhs = Ast::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_name(&mut self) -> Result<String, ParseError> {
        let mut name = match self.next() {
            Some(Tok::Ident(n) | Tok::Quoted(n)) => n,
            other => return Err(ParseError(format!("expected a type name, found {other:?}"))),
        };
        if self.peek() == Some(&Tok::Sym(".")) {
            if let Some(Tok::Ident(n) | Tok::Quoted(n)) = self.toks.get(self.pos + 1).cloned() {
                self.pos += 2;
                name = format!("{name}.{n}");
            }
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Ast, ParseError> {
        match self.peek() {
            Some(Tok::Sym("-")) => {
                self.pos += 1;
                Ok(Ast::Negate(Box::new(self.unary()?)))
            }
            Some(Tok::Sym("+")) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Ast, ParseError> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Some(Tok::Sym(".")) => {
                    self.pos += 1;
                    e = match self.next() {
                        Some(Tok::Ident(n) | Tok::Quoted(n)) => self.member_or_call(Some(e), n)?,
                        other => return Err(ParseError(format!("expected a name after '.', found {other:?}"))),
                    };
                }
                Some(Tok::Sym("[")) => {
                    self.pos += 1;
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Ast::Indexer(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }

    fn member_or_call(&mut self, target: Option<Ast>, name: String) -> Result<Ast, ParseError> {
        if self.peek() != Some(&Tok::Sym("(")) {
            return Ok(Ast::Member(target.map(Box::new), name));
        }
        self.pos += 1;
        let mut args = Vec::new();
        if self.peek() != Some(&Tok::Sym(")")) {
            loop {
                args.push(self.expr(0)?);
                if self.peek() == Some(&Tok::Sym(",")) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        Ok(Ast::Call(target.map(Box::new), name, args))
    }

    fn term(&mut self) -> Result<Ast, ParseError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Ast::Str(s)),
            Some(Tok::Num(n)) => {
                let bad = || ParseError("bad number".into());
                let value = if n.contains('.') {
                    Ast::Dec(Decimal::parse(&n).ok_or_else(bad)?)
                } else {
                    Ast::Int(n.parse().map_err(|_| bad())?)
                };
                // A number followed by a unit string, or by a calendar
                // duration (`7 days`), is a quantity.
                let unit = match self.peek() {
                    Some(Tok::Str(unit)) => Some(unit.clone()),
                    Some(Tok::Ident(word)) => calendar_unit(word).map(str::to_owned),
                    _ => None,
                };
                if let Some(unit) = unit {
                    self.pos += 1;
                    return Ok(Ast::Quantity(n.parse().map_err(|_| bad())?, unit));
                }
                Ok(value)
            }
            // A time of day has no offset (FHIRPath N1 §2.1.13.1.5).
            Some(Tok::DateTime(d)) if d.starts_with('T') && d.contains(['Z', '+', '-']) => {
                Err(ParseError("a time literal with an offset".into()))
            }
            Some(Tok::DateTime(d)) => Ok(Ast::DateTime(d)),
            Some(Tok::Var(v)) => Ok(Ast::Var(v)),
            Some(Tok::Special(s)) => match s.as_str() {
                "this" => Ok(Ast::This),
                "index" => Ok(Ast::Index),
                "total" => Ok(Ast::Total),
                _ => Err(ParseError(format!("unknown ${s}"))),
            },
            Some(Tok::Sym("(")) => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Sym("{")) => {
                self.expect("}")?;
                Ok(Ast::Empty)
            }
            Some(Tok::Ident(w)) if w == "true" || w == "false" => Ok(Ast::Bool(w == "true")),
            Some(Tok::Ident(n) | Tok::Quoted(n)) => self.member_or_call(None, n),
            other => Err(ParseError(format!("unexpected {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_the_specification() {
        let ast = parse("a or b and c implies d").unwrap();
        let Ast::Binary(Op::Implies, lhs, _) = ast else { panic!("{ast:?}") };
        assert!(matches!(*lhs, Ast::Binary(Op::Or, _, _)));
        let ast = parse("a.b = 'x' | c").unwrap();
        assert!(matches!(ast, Ast::Binary(Op::Eq, _, _)), "{ast:?}");
        let ast = parse("-1 + 2 * 3").unwrap();
        assert!(matches!(ast, Ast::Binary(Op::Add, _, _)), "{ast:?}");
    }

    #[test]
    fn literals_paths_and_type_operators() {
        assert_eq!(parse("'it''s'").ok(), None, "an unescaped quote ends the string");
        assert_eq!(parse(r"'a\'b'").unwrap(), Ast::Str("a'b".into()));
        assert_eq!(parse("5 'mg'").unwrap(), Ast::Quantity(5.0, "mg".into()));
        assert_eq!(parse("@2020-01-02").unwrap(), Ast::DateTime("2020-01-02".into()));
        assert!(matches!(parse("x is FHIR.Quantity").unwrap(), Ast::Type(true, _, t) if t == "FHIR.Quantity"));
        assert!(matches!(parse("%`vs-x`").unwrap(), Ast::Var(v) if v == "vs-x"));
        assert!(matches!(parse("a[0].`div`").unwrap(), Ast::Member(Some(_), d) if d == "div"));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in ["a.", "a(", "(a", "a ==", "'open", "a $foo", "#"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
