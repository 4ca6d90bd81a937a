//! FHIRPath's string, math, conversion and collection functions beyond
//! what R4's invariants use (FHIRPath N1 §5.3–§5.7, §6). Each answers
//! exactly as the specification says or declines with an error, which the
//! validator reports as "not evaluated": a guess here would be a wrong
//! finding there.

use super::{fail, single, sv, Env, EvalError, Item, Res, Sv};
use crate::fhirpath::number::{Decimal, MAX_PLACES};
use crate::fhirpath::parse::{calendar_unit, Ast};
use base64::Engine as _;

/// Bounds `repeat()`: an instance is finite, but a projection need not be.
const REPEAT_LIMIT: usize = 10_000;

fn decimal_of(f: f64) -> Result<Decimal, EvalError> {
    // A float result (exp, ln, sqrt) carries ~15 significant digits: keep
    // 14 places, so `81.sqrt() = 9.0` holds and no float noise shows.
    let text = format!("{f:.14}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    Decimal::parse(trimmed).ok_or_else(|| EvalError("not a finite number".into()))
}

/// FHIRPath's Boolean conversion of a string (§5.5.2).
fn boolean_of_str(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
        "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
        _ => None,
    }
}

fn integer_of_str(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn decimal_of_str(s: &str) -> Option<Decimal> {
    // FHIRPath decimals have no exponent.
    (!s.contains(['e', 'E'])).then(|| Decimal::parse(s)).flatten()
}

/// `4 'g'`, `1 day` or `5`: a quantity written as a string (§5.5.9).
fn quantity_of_str(s: &str) -> Option<(f64, String)> {
    let (number, unit) = match s.split_once(' ') {
        Some((n, u)) => (n, u.trim()),
        None => (s, ""),
    };
    decimal_of_str(number)?;
    let value: f64 = number.parse().ok()?;
    let unit = if unit.is_empty() {
        "1".to_owned()
    } else if let Some(quoted) = unit.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
        quoted.to_owned()
    } else {
        calendar_unit(unit)?.to_owned()
    };
    Some((value, unit))
}

fn temporal_of_str(s: &str, kind: &str) -> Option<String> {
    let pattern = match kind {
        "Date" => r"^\d{4}(-\d{2}(-\d{2})?)?$",
        "DateTime" => r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$",
        _ => r"^\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?$",
    };
    // Compiled once per thread, by the engine's regex cache.
    let ok = super::regex(pattern).ok()?.is_match(s);
    ok.then(|| if kind == "Time" { format!("T{s}") } else { s.to_owned() })
}

/// The digits a date, dateTime or time is written to (`@2014` 4,
/// `@T10:30:00.000` 9): its precision, the time zone aside.
fn temporal_digits(t: &str) -> u32 {
    let (date, time) = t.split_once('T').unwrap_or((t, ""));
    let time = time.split(['Z', '+', '-']).next().unwrap_or_default();
    date.chars().chain(time.chars()).filter(char::is_ascii_digit).count() as u32
}

/// `type()`: FHIR types for nodes of the instance, System types for values.
fn type_of<'a>(item: &Item<'a>) -> Item<'a> {
    let system = |name: &str| Item::Type("System", name.to_owned());
    match item {
        Item::Node(n) => Item::Type("FHIR", n.ty.to_owned()),
        Item::Bool(_) => system("Boolean"),
        Item::Int(_) => system("Integer"),
        Item::Dec(_) => system("Decimal"),
        Item::Str(_) => system("String"),
        Item::Temporal(t) if t.starts_with('T') => system("Time"),
        Item::Temporal(t) if t.contains('T') => system("DateTime"),
        Item::Temporal(_) => system("Date"),
        Item::Quantity(..) => system("Quantity"),
        Item::Type(..) => system("TypeInfo"),
    }
}

/// JSON's backslash escapes resolved; anything else is kept as written.
/// None for a broken escape.
fn unescape_json(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 {
                    return None;
                }
                char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
            }
            other => other,
        });
    }
    Some(out)
}

/// The entities `escape('html')` writes, `&apos;`, and numeric references.
fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .or_else(|| e.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl<'a> Env<'a> {
    /// The functions of this module; `None` for a name it does not know.
    pub(super) fn extended(&self, name: &str, input: &[Item<'a>], args: &[Ast], this: &[Item<'a>]) -> Option<Res<'a>> {
        Some(match name {
            "indexOf" | "trim" | "replace" | "split" | "toChars" | "matchesFull" | "encode" | "decode" | "escape"
            | "unescape" => self.string_function(name, input, args, this),
            "join" => (|| {
                let sep = match args.first() {
                    Some(_) => self.str_arg(args, 0, this)?.unwrap_or_default(),
                    None => String::new(),
                };
                let parts: Option<Vec<String>> = input.iter().map(|i| self.string_of(i)).collect();
                let parts = parts.ok_or_else(|| EvalError("join() of non-strings".into()))?;
                Ok(vec![Item::Str(parts.join(&sep))])
            })(),
            "abs" | "ceiling" | "floor" | "truncate" | "round" | "exp" | "ln" | "log" | "power" | "sqrt" => {
                self.math(name, input, args, this)
            }
            "convertsToBoolean" | "convertsToInteger" | "convertsToDecimal" | "convertsToString"
            | "convertsToQuantity" | "convertsToDate" | "convertsToDateTime" | "convertsToTime" => {
                let target = name.trim_start_matches("convertsTo");
                match single(input) {
                    Err(e) => Err(e),
                    Ok(None) => Ok(vec![]),
                    Ok(Some(i)) => Ok(vec![Item::Bool(self.converted(i, target).is_some())]),
                }
            }
            "toBoolean" | "toDecimal" | "toQuantity" | "toDate" | "toDateTime" | "toTime" => {
                let target = name.trim_start_matches("to");
                if name == "toQuantity" && !args.is_empty() {
                    return Some(fail("toQuantity(unit) is not supported"));
                }
                match single(input) {
                    Err(e) => Err(e),
                    Ok(None) => Ok(vec![]),
                    Ok(Some(i)) => Ok(self.converted(i, target).into_iter().collect()),
                }
            }
            "subsetOf" | "supersetOf" => (|| {
                let other = self.arg(args, 0, this)?;
                let (small, big) = if name == "subsetOf" { (input, &other[..]) } else { (&other[..], input) };
                let within = small.iter().all(|x| big.iter().any(|y| self.item_eq(x, y, false) == Some(true)));
                Ok(vec![Item::Bool(within)])
            })(),
            "repeat" => (|| {
                let projection = args.first().ok_or_else(|| EvalError("repeat needs a projection".into()))?;
                let mut out: Vec<Item<'a>> = vec![];
                let mut frontier = input.to_vec();
                while let Some(item) = frontier.pop() {
                    for next in self.lambda(projection, &item, None)? {
                        if !out.iter().any(|o| self.item_eq(o, &next, false) == Some(true)) {
                            if out.len() >= REPEAT_LIMIT {
                                return fail("repeat() beyond its bound");
                            }
                            out.push(next.clone());
                            frontier.push(next);
                        }
                    }
                }
                Ok(out)
            })(),
            "sort" => self.sorted(input, args),
            "aggregate" => self.aggregate(input, args, this),
            "type" => Ok(input.iter().map(type_of).collect()),
            "conformsTo" => (|| {
                let Some(item) = single(input)? else { return Ok(vec![]) };
                let url = self.str_arg(args, 0, this)?.unwrap_or_default();
                // R4's own definitions only: a profile would need the
                // validator inside the engine that the validator runs.
                let ty = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/").unwrap_or_default();
                if !self.model.is_type_name(ty) {
                    return fail("conformsTo() a profile is not supported");
                }
                let Item::Node(n) = item else { return fail("conformsTo() of a value") };
                let is_resource = self.model.is_resource_type(n.ty);
                let conforms = n.ty == ty
                    || (is_resource && ty == "Resource")
                    || (is_resource && ty == "DomainResource" && !matches!(n.ty, "Bundle" | "Binary" | "Parameters"));
                Ok(vec![Item::Bool(conforms)])
            })(),
            "precision" => (|| {
                let Some(item) = single(input)? else { return Ok(vec![]) };
                let digits = match sv(item) {
                    Sv::Int(_) => 0,
                    Sv::Dec(d) => d.places(),
                    Sv::Temporal(t) => temporal_digits(t),
                    _ => return fail("precision() of this type is not supported"),
                };
                Ok(vec![Item::Int(i64::from(digits))])
            })(),
            "comparable" => (|| {
                let (Some(x), Some(y)) = (single(input)?, single(&self.arg(args, 0, this)?)?.cloned()) else {
                    return Ok(vec![]);
                };
                match (sv(x), sv(&y)) {
                    (Sv::Quantity(_, u), Sv::Quantity(_, v)) => Ok(vec![Item::Bool(
                        u == v || crate::ucum::convert(1.0, super::ucum_of(u), super::ucum_of(v)).is_some(),
                    )]),
                    _ => fail("comparable() compares quantities"),
                }
            })(),
            "lowBoundary" | "highBoundary" => (|| {
                let Some(item) = single(input)? else { return Ok(vec![]) };
                let digits = match args.first() {
                    None => None,
                    Some(_) => match self.int_arg(args, 0, this)? {
                        Some(p) if p >= 0 => Some(p as u32),
                        Some(_) => return Ok(vec![]),
                        None => return Ok(vec![]),
                    },
                };
                let high = name == "highBoundary";
                let places = digits.unwrap_or(8);
                let decimal = |d: Decimal| match d.boundary(high, places) {
                    Some(b) => Ok(vec![Item::Dec(b)]),
                    None if places > MAX_PLACES => Ok(vec![]),
                    None => fail("a boundary a decimal cannot write (-0.0)"),
                };
                // A FHIR dateTime with a date's precision (Period.start
                // `2001-05-06`) spans a dateTime's range, not a date's.
                let digits = match item {
                    Item::Node(n) if digits.is_none() && matches!(n.ty, "dateTime" | "instant") => Some(17),
                    _ => digits,
                };
                match sv(item) {
                    Sv::Int(i) => decimal(Decimal::from_int(i)),
                    Sv::Dec(d) => decimal(d),
                    Sv::Temporal(t) => Ok(crate::fhirpath::temporal::boundary(t, high, digits)
                        .map(Item::Temporal)
                        .into_iter()
                        .collect()),
                    _ => fail(format!("{name}() of this type is not supported")),
                }
            })(),
            "today" | "now" => {
                let now = time::OffsetDateTime::now_utc();
                let format = if name == "today" {
                    time::macros::format_description!("[year]-[month]-[day]")
                } else {
                    time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                    )
                };
                now.format(format).map(|t| vec![Item::Temporal(t)]).map_err(|e| EvalError(e.to_string()))
            }
            _ => return None,
        })
    }

    /// `sort()` and `sort(key, -key...)`: by each key in turn, `-` for
    /// descending; an item whose key is empty sorts first either way.
    fn sorted(&self, input: &[Item<'a>], args: &[Ast]) -> Res<'a> {
        let keys: Vec<(&Ast, bool)> = args
            .iter()
            .map(|a| match a {
                Ast::Negate(inner) => (&**inner, true),
                other => (other, false),
            })
            .collect();
        let mut rows = Vec::with_capacity(input.len());
        for (n, item) in input.iter().enumerate() {
            let values = if keys.is_empty() {
                vec![Some(item.clone())]
            } else {
                let mut values = vec![];
                for (key, _) in &keys {
                    values.push(single(&self.lambda(key, item, Some(n))?)?.cloned());
                }
                values
            };
            rows.push((values, item.clone()));
        }
        let mut failed = None;
        rows.sort_by(|(x, _), (y, _)| {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                let descending = keys.get(i).is_some_and(|(_, d)| *d);
                let order = match (a, b) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Less,
                    (Some(_), None) => std::cmp::Ordering::Greater,
                    (Some(a), Some(b)) => match self.compare(a, b) {
                        Ok(Some(o)) if descending => o.reverse(),
                        Ok(Some(o)) => o,
                        _ => {
                            failed = Some(EvalError("sort() keys that do not compare".into()));
                            std::cmp::Ordering::Equal
                        }
                    },
                };
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
            std::cmp::Ordering::Equal
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(rows.into_iter().map(|(_, item)| item).collect()),
        }
    }

    fn string_function(&self, name: &str, input: &[Item<'a>], args: &[Ast], this: &[Item<'a>]) -> Res<'a> {
        let Some(s) = self.input_str(input)? else { return Ok(vec![]) };
        let arg = |i| self.str_arg(args, i, this);
        Ok(match name {
            "trim" => vec![Item::Str(s.trim().to_owned())],
            "toChars" => s.chars().map(|c| Item::Str(c.to_string())).collect(),
            "indexOf" => match arg(0)? {
                None => vec![],
                Some(sub) => {
                    let at = s.find(&sub).map_or(-1, |byte| s[..byte].chars().count() as i64);
                    vec![Item::Int(at)]
                }
            },
            "replace" => match (arg(0)?, arg(1)?) {
                (Some(pattern), Some(with)) if pattern.is_empty() => {
                    // Between every character, and at both ends.
                    let mut out = with.clone();
                    for c in s.chars() {
                        out.push(c);
                        out.push_str(&with);
                    }
                    vec![Item::Str(out)]
                }
                (Some(pattern), Some(with)) => vec![Item::Str(s.replace(&pattern, &with))],
                _ => vec![],
            },
            "split" => match arg(0)? {
                None => vec![],
                Some(sep) if sep.is_empty() => s.chars().map(|c| Item::Str(c.to_string())).collect(),
                Some(sep) => s.split(sep.as_str()).map(|p| Item::Str(p.to_owned())).collect(),
            },
            "matchesFull" => match arg(0)? {
                None => vec![],
                Some(pattern) => vec![Item::Bool(super::regex(&format!("(?s)^(?:{pattern})$"))?.is_match(&s))],
            },
            "escape" | "unescape" => {
                let Some(target) = arg(0)? else { return Ok(vec![]) };
                let out = match (name, target.as_str()) {
                    ("escape", "html") => crate::primitives::escape_html(&s),
                    ("unescape", "html") => unescape_html(&s),
                    ("escape", "json") => {
                        let quoted = serde_json::Value::String(s).to_string();
                        quoted[1..quoted.len() - 1].to_owned()
                    }
                    ("unescape", "json") => match unescape_json(&s) {
                        Some(text) => text,
                        None => return Ok(vec![]),
                    },
                    _ => return fail(format!("{name}('{target}') is not supported")),
                };
                vec![Item::Str(out)]
            }
            "encode" | "decode" => {
                let Some(format) = arg(0)? else { return Ok(vec![]) };
                let b64 = base64::engine::general_purpose::STANDARD;
                let url = base64::engine::general_purpose::URL_SAFE;
                let out = match (name, format.as_str()) {
                    ("encode", "base64") => b64.encode(&s),
                    ("encode", "urlbase64") => url.encode(&s),
                    ("encode", "hex") => s.bytes().map(|b| format!("{b:02x}")).collect(),
                    ("decode", "base64" | "urlbase64" | "hex") => {
                        let bytes = match format.as_str() {
                            "base64" => b64.decode(&s).ok(),
                            "urlbase64" => url.decode(&s).ok(),
                            _ => (s.len() % 2 == 0)
                                .then(|| {
                                    (0..s.len())
                                        .step_by(2)
                                        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                                        .collect::<Option<Vec<u8>>>()
                                })
                                .flatten(),
                        };
                        match bytes.and_then(|b| String::from_utf8(b).ok()) {
                            Some(text) => text,
                            None => return Ok(vec![]),
                        }
                    }
                    _ => return fail(format!("{name}('{format}') is not supported")),
                };
                vec![Item::Str(out)]
            }
            _ => return fail(format!("function {name}() is not supported")),
        })
    }

    fn math(&self, name: &str, input: &[Item<'a>], args: &[Ast], this: &[Item<'a>]) -> Res<'a> {
        let Some(item) = single(input)? else { return Ok(vec![]) };
        let (value, is_int) = match sv(item) {
            Sv::Int(i) => (Decimal::from_int(i), true),
            Sv::Dec(d) => (d, false),
            Sv::Quantity(v, u) if name == "abs" => return Ok(vec![Item::Quantity(v.abs(), u.to_owned())]),
            _ => return fail(format!("{name}() of a non-number")),
        };
        let int = |d: Decimal| -> Res<'a> {
            d.to_string().parse::<i64>().map(|i| vec![Item::Int(i)]).or_else(|_| fail("integer overflow"))
        };
        let number_arg = |i| -> Result<Option<Decimal>, EvalError> {
            Ok(match single(&self.arg(args, i, this)?)?.map(sv) {
                None => None,
                Some(Sv::Int(v)) => Some(Decimal::from_int(v)),
                Some(Sv::Dec(d)) => Some(d),
                Some(_) => return fail("a numeric argument is expected"),
            })
        };
        let f = value.to_f64();
        let float = |r: f64| -> Res<'a> {
            if r.is_finite() {
                Ok(vec![Item::Dec(decimal_of(r)?)])
            } else {
                Ok(vec![])
            }
        };
        match name {
            "abs" if is_int => int(if f < 0.0 { value.negated() } else { value }),
            "abs" => Ok(vec![Item::Dec(if f < 0.0 { value.negated() } else { value })]),
            "truncate" => int(value.truncated()),
            "floor" => int(value.floored()),
            "ceiling" => int(value.negated().floored().negated()),
            "round" => {
                let places = match args.first() {
                    None => 0,
                    Some(_) => match self.int_arg(args, 0, this)? {
                        Some(p) if (0..=28).contains(&p) => p as u32,
                        Some(_) => return fail("round() precision out of range"),
                        None => return Ok(vec![]),
                    },
                };
                Ok(value.rounded(places).map(Item::Dec).into_iter().collect())
            }
            "exp" => float(f.exp()),
            "ln" if f > 0.0 => float(f.ln()),
            "sqrt" if f >= 0.0 => float(f.sqrt()),
            "ln" | "sqrt" => Ok(vec![]),
            "log" => match number_arg(0)? {
                Some(base) if f > 0.0 && base.to_f64() > 0.0 && base.to_f64() != 1.0 => {
                    float(f.ln() / base.to_f64().ln())
                }
                _ => Ok(vec![]),
            },
            _ => match number_arg(0)? {
                // power: an integer to an integer power stays an integer.
                Some(e) if is_int && e.is_whole() && e >= Decimal::from_int(0) => {
                    let (b, e) = (f as i64, e.to_f64() as u32);
                    b.checked_pow(e).map(|r| vec![Item::Int(r)]).ok_or_else(|| EvalError("integer overflow".into()))
                }
                Some(e) => {
                    let r = f.powf(e.to_f64());
                    if r.is_nan() {
                        Ok(vec![])
                    } else {
                        float(r)
                    }
                }
                None => Ok(vec![]),
            },
        }
    }

    /// An item converted to the System type `target`, if it converts.
    fn converted(&self, item: &Item<'a>, target: &str) -> Option<Item<'a>> {
        let v = sv(item);
        match (target, &v) {
            ("Boolean", Sv::Bool(b)) => Some(Item::Bool(*b)),
            ("Boolean", Sv::Int(i)) if *i == 0 || *i == 1 => Some(Item::Bool(*i == 1)),
            ("Boolean", Sv::Dec(d)) if *d == Decimal::from_int(0) || *d == Decimal::from_int(1) => {
                Some(Item::Bool(*d == Decimal::from_int(1)))
            }
            ("Boolean", Sv::Str(s)) => boolean_of_str(s).map(Item::Bool),
            ("Integer", Sv::Int(i)) => Some(Item::Int(*i)),
            ("Integer", Sv::Bool(b)) => Some(Item::Int(i64::from(*b))),
            ("Integer", Sv::Str(s)) => integer_of_str(s).map(Item::Int),
            ("Decimal", Sv::Dec(d)) => Some(Item::Dec(*d)),
            ("Decimal", Sv::Int(i)) => Some(Item::Dec(Decimal::from_int(*i))),
            ("Decimal", Sv::Bool(b)) => Decimal::parse(if *b { "1.0" } else { "0.0" }).map(Item::Dec),
            ("Decimal", Sv::Str(s)) => decimal_of_str(s).map(Item::Dec),
            ("String", Sv::Node(_)) => None,
            ("String", _) => self.string_of(item).map(Item::Str),
            ("Quantity", Sv::Quantity(q, u)) => Some(Item::Quantity(*q, (*u).to_owned())),
            ("Quantity", Sv::Int(i)) => Some(Item::Quantity(*i as f64, "1".into())),
            ("Quantity", Sv::Dec(d)) => Some(Item::Quantity(d.to_f64(), "1".into())),
            ("Quantity", Sv::Bool(b)) => Some(Item::Quantity(if *b { 1.0 } else { 0.0 }, "1".into())),
            ("Quantity", Sv::Str(s)) => quantity_of_str(s).map(|(q, u)| Item::Quantity(q, u)),
            ("Date" | "DateTime" | "Time", Sv::Str(s)) => temporal_of_str(s, target).map(Item::Temporal),
            ("Date", Sv::Temporal(t)) if !t.starts_with('T') => {
                Some(Item::Temporal(t.split('T').next().unwrap_or(t).to_owned()))
            }
            ("DateTime", Sv::Temporal(t)) if !t.starts_with('T') => Some(Item::Temporal((*t).to_owned())),
            ("Time", Sv::Temporal(t)) if t.starts_with('T') => Some(Item::Temporal((*t).to_owned())),
            _ => None,
        }
    }
}
