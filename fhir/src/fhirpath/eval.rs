//! Evaluation of FHIRPath over FHIR JSON, with element types taken from the
//! generated model (so `value` finds `valueQuantity`, and `is(Composition)`
//! knows what a node is).

use super::number::Decimal;
use super::parse::{calendar_unit, Ast, Op, CALENDAR_UNITS};
use crate::primitives::is_safe_xhtml;
use crate::validator::Model;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

mod functions;

/// A node of the instance: a JSON value with the type and definition the
/// model gives it.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// `Value::Null` for a primitive that only carries extensions.
    pub v: &'a Value,
    /// The `_name` sibling of a primitive (its id and extensions).
    pub ext: Option<&'a Value>,
    /// The FHIR type code (`string`, `Quantity`, `Patient`).
    pub ty: &'a str,
    /// The element whose children apply to this node.
    pub def: Option<usize>,
    /// The element definition the node was reached through.
    pub el: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum Item<'a> {
    Node(Node<'a>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(String),
    /// date, dateTime, instant or time, as written.
    Temporal(String),
    Quantity(f64, String),
    /// What `type()` answers: a type's namespace (`System`, `FHIR`) and name.
    Type(&'static str, String),
}

fn compare_sv(x: &Sv, y: &Sv) -> Result<Option<Ordering>, EvalError> {
    Ok(match (x, y) {
        (Sv::Str(a), Sv::Str(b)) => Some(a.cmp(b)),
        (Sv::Temporal(a), Sv::Temporal(b)) => super::temporal::compare(a, b),
        (Sv::Quantity(a, u), Sv::Quantity(b, v)) if u == v => a.partial_cmp(b),
        // Comparable UCUM units: `4 'g' = 4000 'mg'`, `7 days = 1 'wk'`.
        (Sv::Quantity(a, u), Sv::Quantity(b, v)) => match crate::ucum::convert(*b, ucum_of(v), ucum_of(u)) {
            Some(b) => a.partial_cmp(&b),
            None => None,
        },
        (a, b) => match (num(a), num(b)) {
            (Some(p), Some(q)) => Some(p.cmp(&q)),
            _ => return fail("values of different types cannot be compared"),
        },
    })
}

/// An item as FHIRPath compares it: primitives as System values, borrowed.
enum Sv<'b, 'a> {
    Node(&'b Node<'a>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(&'b str),
    Temporal(&'b str),
    Quantity(f64, &'b str),
    Type(&'b str, &'b str),
}

fn sv<'b, 'a: 'b>(i: &'b Item<'a>) -> Sv<'b, 'a> {
    let n = match i {
        Item::Node(n) => n,
        Item::Bool(b) => return Sv::Bool(*b),
        Item::Int(v) => return Sv::Int(*v),
        Item::Dec(v) => return Sv::Dec(*v),
        Item::Str(s) => return Sv::Str(s),
        Item::Temporal(s) => return Sv::Temporal(s),
        Item::Quantity(v, u) => return Sv::Quantity(*v, u),
        Item::Type(ns, name) => return Sv::Type(ns, name),
    };
    match (n.ty, n.v) {
        (_, Value::Bool(b)) => Sv::Bool(*b),
        ("integer" | "positiveInt" | "unsignedInt", Value::Number(x)) => {
            match (x.as_i64(), Decimal::parse(x.as_str())) {
                (Some(i), _) => Sv::Int(i),
                (None, Some(d)) => Sv::Dec(d),
                // Beyond an exact decimal: no number, so no comparison or arithmetic.
                (None, None) => Sv::Node(n),
            }
        }
        (_, Value::Number(x)) => Decimal::parse(x.as_str()).map_or(Sv::Node(n), Sv::Dec),
        ("date" | "dateTime" | "instant" | "time", Value::String(s)) => Sv::Temporal(s),
        (_, Value::String(s)) => Sv::Str(s),
        ("Quantity" | "Age" | "Distance" | "Duration" | "Count" | "SimpleQuantity" | "MoneyQuantity", v)
            if v.get("value").is_some() =>
        {
            let unit = v.get("code").or(v.get("unit")).and_then(Value::as_str).unwrap_or("");
            Sv::Quantity(v["value"].as_f64().unwrap_or(0.0), unit)
        }
        _ => Sv::Node(n),
    }
}

fn num(v: &Sv) -> Option<Decimal> {
    match v {
        Sv::Int(x) => Some(Decimal::from_int(*x)),
        Sv::Dec(x) => Some(*x),
        _ => None,
    }
}

/// Why an expression could not be evaluated: the validator then reports the
/// invariant as not evaluated rather than guessing.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError(pub String);

type Coll<'a> = Vec<Item<'a>>;
type Res<'a> = Result<Coll<'a>, EvalError>;

fn fail<T>(m: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(m.into()))
}

/// The environment of one evaluation: `%resource`, `%rootResource`, `%context`.
pub struct Env<'a> {
    pub model: &'a Model,
    pub resource: Node<'a>,
    pub root: Node<'a>,
    pub context: Node<'a>,
    /// FHIRPath's letter, as HL7's suite tests it: a FHIR primitive is not
    /// of a System type, and a name no focus type defines is an error.
    /// R4's own invariants break both (que-7 writes `answer is Boolean` for
    /// an `answerBoolean`; cid-0 tests a `name` ChargeItemDefinition lacks),
    /// so the validator evaluates them as R4 meant them, not strictly.
    pub strict: bool,
    /// `$index` inside an iterating function's argument.
    index: Cell<Option<usize>>,
    /// `$total` inside `aggregate()`'s aggregator.
    total: RefCell<Option<Coll<'a>>>,
}

const UCUM: &str = "http://unitsofmeasure.org";

impl<'a> Env<'a> {
    pub fn new(model: &'a Model, resource: Node<'a>, root: Node<'a>, context: Node<'a>, strict: bool) -> Env<'a> {
        Env { model, resource, root, context, strict, index: Cell::new(None), total: RefCell::new(None) }
    }

    /// The same resources, another `%context`.
    pub fn at(&self, context: Node<'a>) -> Env<'a> {
        Env::new(self.model, self.resource, self.root, context, self.strict)
    }

    /// Evaluates `ast` with `%context` as its focus.
    pub fn evaluate(&self, ast: &Ast) -> Res<'a> {
        let start = vec![Item::Node(self.context)];
        self.eval(ast, &start, &start)
    }

    /// The boolean an invariant yields: empty counts as satisfied, as in
    /// the FHIR validators.
    pub fn holds(&self, ast: &Ast) -> Result<bool, EvalError> {
        Ok(truth(&self.evaluate(ast)?)?.unwrap_or(true))
    }

    fn eval(&self, ast: &Ast, focus: &[Item<'a>], this: &[Item<'a>]) -> Res<'a> {
        Ok(match ast {
            Ast::Empty => vec![],
            Ast::Bool(b) => vec![Item::Bool(*b)],
            Ast::Str(s) => vec![Item::Str(s.clone())],
            Ast::Int(i) => vec![Item::Int(*i)],
            Ast::Dec(d) => vec![Item::Dec(*d)],
            Ast::DateTime(d) => vec![Item::Temporal(d.clone())],
            Ast::Quantity(v, u) => vec![Item::Quantity(*v, u.clone())],
            Ast::This => this.to_vec(),
            Ast::Index => match self.index.get() {
                Some(i) => vec![Item::Int(i as i64)],
                None => return fail("$index outside an iterating function"),
            },
            Ast::Total => match &*self.total.borrow() {
                Some(total) => total.clone(),
                None => return fail("$total outside aggregate()"),
            },
            Ast::Var(name) => match name.as_str() {
                "resource" => vec![Item::Node(self.resource)],
                "rootResource" => vec![Item::Node(self.root)],
                "context" => vec![Item::Node(self.context)],
                "ucum" => vec![Item::Str(UCUM.into())],
                "sct" => vec![Item::Str("http://snomed.info/sct".into())],
                "loinc" => vec![Item::Str("http://loinc.org".into())],
                v if v.starts_with("vs-") => vec![Item::Str(format!("http://hl7.org/fhir/ValueSet/{}", &v[3..]))],
                v if v.starts_with("ext-") => {
                    vec![Item::Str(format!("http://hl7.org/fhir/StructureDefinition/{}", &v[4..]))]
                }
                v => return fail(format!("unknown variable %{v}")),
            },
            Ast::Member(target, name) => {
                // Strictly, a cast fixes the type: `(value as Period).unit`
                // names an element Period lacks, an error even when empty.
                if let Some(Ast::Type(false, _, ty)) = target.as_deref() {
                    if self.strict
                        && self.model.type_defines(ty.strip_prefix("FHIR.").unwrap_or(ty), name) == Some(false)
                    {
                        return fail(format!("{ty} has no element {name}"));
                    }
                }
                let input = match target {
                    Some(t) => Cow::Owned(self.eval(t, focus, this)?),
                    None => Cow::Borrowed(focus),
                };
                let mut out = Vec::new();
                let mut undefined = 0;
                for item in input.iter() {
                    if let Item::Type(namespace, type_name) = item {
                        match name.as_str() {
                            "namespace" => out.push(Item::Str((*namespace).to_owned())),
                            "name" => out.push(Item::Str(type_name.clone())),
                            _ => {}
                        }
                        continue;
                    }
                    let Item::Node(n) = item else { continue };
                    // A leading type name (`Patient.name`) selects the focus if it is one.
                    if target.is_none() && name.starts_with(|c: char| c.is_ascii_uppercase()) && n.ty == name {
                        out.push(item.clone());
                        continue;
                    }
                    if self.model.defines(n, name) == Some(false) {
                        undefined += 1;
                    }
                    self.model.child_nodes(n, Some(name), &mut |_, _, c| out.push(Item::Node(c)));
                }
                // A name no focus type has is a mistake in the expression
                // (`name.given1`, `valueQuantity`): an error, not "empty".
                if self.strict && undefined > 0 && undefined == input.len() {
                    return fail(format!("no element {name} here"));
                }
                out
            }
            Ast::Indexer(target, idx) => {
                let input = self.eval(target, focus, this)?;
                match single(&self.eval(idx, this, this)?)? {
                    Some(Item::Int(i)) if *i >= 0 => input.into_iter().nth(*i as usize).into_iter().collect(),
                    _ => vec![],
                }
            }
            Ast::Negate(e) => {
                self.eval(e, focus, this)?.into_iter().map(|i| self.negate(i)).collect::<Result<_, _>>()?
            }
            Ast::Type(is, e, ty) => {
                let input = self.eval(e, focus, this)?;
                self.type_op(*is, &input, ty)?
            }
            Ast::Binary(op, l, r) => self.binary(*op, l, r, focus, this)?,
            // Strictly, children() and descendants() have no order for
            // skip, take, first, last, tail or an index to rely on.
            Ast::Call(Some(target), name, _)
                if self.strict
                    && matches!(name.as_str(), "skip" | "take" | "first" | "last" | "tail")
                    && matches!(&**target, Ast::Call(_, inner, _) if inner == "children" || inner == "descendants") =>
            {
                return fail(format!("{name}() over an unordered collection"));
            }
            Ast::Call(target, name, args) => {
                let input = match target {
                    Some(t) => Cow::Owned(self.eval(t, focus, this)?),
                    None => Cow::Borrowed(focus),
                };
                self.call(name, &input, args, this)?
            }
        })
    }

    fn negate(&self, i: Item<'a>) -> Result<Item<'a>, EvalError> {
        match sv(&i) {
            Sv::Int(x) => Ok(Item::Int(-x)),
            Sv::Dec(x) => Ok(Item::Dec(x.negated())),
            Sv::Quantity(x, u) => Ok(Item::Quantity(-x, u.to_owned())),
            _ => fail("cannot negate a non-number"),
        }
    }

    fn type_op(&self, is: bool, input: &[Item<'a>], ty: &str) -> Res<'a> {
        let ty = ty.strip_prefix("FHIR.").unwrap_or(ty);
        let system = ty.strip_prefix("System.").unwrap_or(ty);
        // `System.Patient` names a type of no item: the namespace is
        // explicit, so it is no typo of a FHIR type.
        if system.len() < ty.len() && !SYSTEM_TYPES.contains(&system) {
            return Ok(match single(input)? {
                Some(_) if is => vec![Item::Bool(false)],
                _ => vec![],
            });
        }
        if !self.model.is_type_name(ty) && !SYSTEM_TYPES.contains(&system) {
            return fail(format!("unknown type {ty}"));
        }
        if is {
            return Ok(match single(input)? {
                None => vec![],
                Some(i) => vec![Item::Bool(self.is_type(i, ty, true))],
            });
        }
        Ok(input.iter().filter(|i| self.is_type(i, ty, false)).cloned().collect())
    }

    /// Whether an item is of type `ty`; `specialized` lets a `code` be a
    /// `string` (`is` does, HL7's suite has `as` and `ofType` not).
    fn is_type(&self, i: &Item<'a>, ty: &str, specialized: bool) -> bool {
        match i {
            Item::Node(n) => {
                n.ty == ty
                    || (specialized && fhir_supertype(n.ty) == Some(ty))
                    || (!self.strict && system_type(n.ty) == Some(ty.strip_prefix("System.").unwrap_or(ty)))
                    || (matches!(ty, "Resource" | "DomainResource") && self.model.is_resource_type(n.ty))
                    || (ty == "Quantity"
                        && matches!(
                            n.ty,
                            "Age" | "Distance" | "Duration" | "Count" | "SimpleQuantity" | "MoneyQuantity"
                        ))
            }
            Item::Bool(_) => matches!(ty, "Boolean" | "System.Boolean"),
            Item::Int(_) => matches!(ty, "Integer" | "System.Integer"),
            Item::Dec(_) => matches!(ty, "Decimal" | "System.Decimal"),
            Item::Str(_) => matches!(ty, "String" | "System.String"),
            Item::Temporal(s) => {
                let kind = if s.starts_with('T') {
                    "Time"
                } else if s.contains('T') {
                    "DateTime"
                } else {
                    "Date"
                };
                ty.strip_prefix("System.").unwrap_or(ty) == kind
            }
            Item::Quantity(..) => matches!(ty, "Quantity" | "System.Quantity"),
            Item::Type(..) => false,
        }
    }

    fn binary(&self, op: Op, l: &Ast, r: &Ast, focus: &[Item<'a>], this: &[Item<'a>]) -> Res<'a> {
        let a = self.eval(l, focus, this)?;
        // The left side alone decides `false and _`, `true or _`, `false implies _`.
        let decided = match (op, truth(&a)) {
            (Op::And, Ok(Some(false))) => Some(false),
            (Op::Or, Ok(Some(true))) | (Op::Implies, Ok(Some(false))) => Some(true),
            _ => None,
        };
        if let Some(v) = decided {
            return Ok(vec![Item::Bool(v)]);
        }
        let b = self.eval(r, focus, this)?;
        let boolean = |x: Option<bool>| x.map(Item::Bool).into_iter().collect::<Vec<_>>();
        Ok(match op {
            Op::And => {
                let (x, y) = (truth(&a)?, truth(&b)?);
                boolean(match (x, y) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            }
            Op::Or => {
                let (x, y) = (truth(&a)?, truth(&b)?);
                boolean(match (x, y) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            }
            Op::Xor => boolean(match (truth(&a)?, truth(&b)?) {
                (Some(x), Some(y)) => Some(x != y),
                _ => None,
            }),
            Op::Implies => boolean(match (truth(&a)?, truth(&b)?) {
                (Some(false), _) | (_, Some(true)) => Some(true),
                (Some(true), y) => y,
                (None, _) => None,
            }),
            Op::Eq => boolean(self.equals(&a, &b, false)),
            Op::Ne => boolean(self.equals(&a, &b, false).map(|x| !x)),
            Op::Equiv => boolean(Some(self.equals(&a, &b, true).unwrap_or(a.is_empty() && b.is_empty()))),
            Op::NotEquiv => boolean(Some(!self.equals(&a, &b, true).unwrap_or(a.is_empty() && b.is_empty()))),
            Op::Lt | Op::Gt | Op::Le | Op::Ge => {
                let (Some(x), Some(y)) = (single(&a)?, single(&b)?) else { return Ok(vec![]) };
                boolean(self.compare(x, y)?.map(|o| match op {
                    Op::Lt => o == Ordering::Less,
                    Op::Gt => o == Ordering::Greater,
                    Op::Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            Op::Union => self.distinct(&a.into_iter().chain(b).collect::<Vec<_>>()),
            Op::In | Op::Contains => {
                let (needle, hay) = if op == Op::In { (a, b) } else { (b, a) };
                match single(&needle)? {
                    None => vec![],
                    Some(x) => vec![Item::Bool(hay.iter().any(|h| self.item_eq(x, h, false) == Some(true)))],
                }
            }
            Op::Concat => {
                let s = |c: &[Item<'a>]| -> Result<String, EvalError> {
                    Ok(match single(c)? {
                        None => String::new(),
                        Some(i) => self.string_of(i).unwrap_or_default(),
                    })
                };
                vec![Item::Str(s(&a)? + &s(&b)?)]
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::IntDiv | Op::Mod => {
                let (Some(x), Some(y)) = (single(&a)?, single(&b)?) else { return Ok(vec![]) };
                self.arithmetic(op, x, y)?
            }
        })
    }

    fn arithmetic(&self, op: Op, x: &Item<'a>, y: &Item<'a>) -> Res<'a> {
        let (x, y) = (sv(x), sv(y));
        if let (Op::Add, Sv::Str(a), Sv::Str(b)) = (op, &x, &y) {
            return Ok(vec![Item::Str(format!("{a}{b}"))]);
        }
        if let (Op::Add | Op::Sub, Sv::Temporal(t), Sv::Quantity(v, unit)) = (op, &x, &y) {
            // The quantity's fraction is dropped (`7.7 days` adds 7).
            let amount = if op == Op::Sub { -v.trunc() } else { v.trunc() } as i64;
            return super::temporal::add(t, amount, unit)
                .map(|r| vec![Item::Temporal(r)])
                .ok_or_else(|| EvalError(format!("date arithmetic in {unit}")));
        }
        let (Some(a), Some(b)) = (num(&x), num(&y)) else { return fail("arithmetic on non-numbers") };
        let zero = Decimal::from_int(0);
        if matches!(op, Op::Div | Op::IntDiv | Op::Mod) && b == zero {
            return Ok(vec![]);
        }
        let ints = matches!((&x, &y), (Sv::Int(_), Sv::Int(_)));
        let r = match op {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => {
                return a.checked_div(b).map(|d| vec![Item::Dec(d)]).ok_or_else(|| EvalError("decimal overflow".into()))
            }
            Op::IntDiv => {
                let q = a.int_div(b).and_then(|q| i64::try_from(q).ok());
                return q.map(|q| vec![Item::Int(q)]).ok_or_else(|| EvalError("integer overflow".into()));
            }
            _ => a.checked_rem(b),
        };
        let Some(r) = r else { return fail("decimal overflow") };
        if ints {
            return r.to_string().parse().map(|i| vec![Item::Int(i)]).or_else(|_| fail("integer overflow"));
        }
        Ok(vec![Item::Dec(r)])
    }

    fn string_of(&self, i: &Item<'a>) -> Option<String> {
        match sv(i) {
            Sv::Str(s) => Some(s.to_owned()),
            // `@T14:34` is the time `14:34`; `@2015T` the dateTime `2015`.
            Sv::Temporal(s) => Some(s.strip_prefix('T').unwrap_or(s).trim_end_matches('T').to_owned()),
            Sv::Bool(b) => Some(b.to_string()),
            Sv::Int(v) => Some(v.to_string()),
            Sv::Dec(v) => Some(v.to_string()),
            Sv::Quantity(v, u) if calendar_unit(u) == Some(u) => Some(format!("{v} {u}")),
            Sv::Quantity(v, u) => Some(format!("{v} '{u}'")),
            Sv::Node(_) | Sv::Type(..) => None,
        }
    }

    /// `=` (or `~` when `equiv`) over collections: empty when either side is.
    fn equals(&self, a: &[Item<'a>], b: &[Item<'a>], equiv: bool) -> Option<bool> {
        if a.is_empty() || b.is_empty() {
            return None;
        }
        if a.len() != b.len() {
            return Some(false);
        }
        if equiv {
            // `~` on collections ignores order: each item has its match.
            let mut unmatched: Vec<&Item<'a>> = b.iter().collect();
            for x in a {
                match unmatched.iter().position(|y| self.item_eq(x, y, true) == Some(true)) {
                    Some(i) => {
                        unmatched.swap_remove(i);
                    }
                    None => return Some(false),
                }
            }
            return Some(true);
        }
        let mut all = true;
        for (x, y) in a.iter().zip(b) {
            match self.item_eq(x, y, equiv) {
                Some(true) => {}
                Some(false) => all = false,
                None => return None,
            }
        }
        Some(all)
    }

    fn item_eq(&self, x: &Item<'a>, y: &Item<'a>, equiv: bool) -> Option<bool> {
        match (sv(x), sv(y)) {
            (Sv::Node(a), Sv::Node(b)) => Some(a.v == b.v),
            (Sv::Str(a), Sv::Str(b)) if equiv => Some(normalise(a) == normalise(b)),
            (Sv::Str(a), Sv::Str(b)) => Some(a == b),
            (Sv::Bool(a), Sv::Bool(b)) => Some(a == b),
            (a @ (Sv::Int(_) | Sv::Dec(_)), b @ (Sv::Int(_) | Sv::Dec(_))) if equiv => {
                Some(num(&a)?.equivalent(num(&b)?))
            }
            (Sv::Temporal(a), Sv::Temporal(b)) if equiv => Some(super::temporal::equivalent(a, b)),
            (Sv::Temporal(a), Sv::Temporal(b)) => super::temporal::equal(a, b),
            (Sv::Temporal(a), Sv::Str(b)) | (Sv::Str(b), Sv::Temporal(a)) => Some(a == b),
            // Quantities of units that do not convert: unknown (§6.1.1).
            (a @ Sv::Quantity(..), b @ Sv::Quantity(..)) if !equiv => {
                compare_sv(&a, &b).ok().flatten().map(|o| o == Ordering::Equal)
            }
            // `~` at the precision of the less precise (`4 'g' ~ 4040 'mg'`).
            (Sv::Quantity(a, u), Sv::Quantity(b, v)) => {
                let b = crate::ucum::convert(b, ucum_of(v), ucum_of(u))?;
                let (a, b) = (Decimal::parse(&a.to_string())?, Decimal::parse(&b.to_string())?);
                Some(a.equivalent(b))
            }
            (Sv::Type(a, x), Sv::Type(b, y)) => Some(a == b && x == y),
            (a, b) => match compare_sv(&a, &b) {
                Ok(Some(o)) => Some(o == Ordering::Equal),
                _ => Some(false),
            },
        }
    }

    fn compare(&self, x: &Item<'a>, y: &Item<'a>) -> Result<Option<Ordering>, EvalError> {
        compare_sv(&sv(x), &sv(y))
    }

    /// `arg` with `item` as its focus and `$this`, and `index` as `$index`
    /// (none where the spec gives the items no order, as in `repeat()`).
    fn lambda(&self, arg: &Ast, item: &Item<'a>, index: Option<usize>) -> Res<'a> {
        let one = [item.clone()];
        let outer = self.index.replace(index);
        let out = self.eval(arg, &one, &one);
        self.index.set(outer);
        out
    }

    /// `aggregate(aggregator, init)`: `$total` starts as `init` and becomes
    /// the aggregator's value for each item in turn.
    fn aggregate(&self, input: &[Item<'a>], args: &[Ast], this: &[Item<'a>]) -> Res<'a> {
        let aggregator = args.first().ok_or_else(|| EvalError("aggregate needs an aggregator".into()))?;
        let mut total = match args.get(1) {
            Some(_) => self.arg(args, 1, this)?,
            None => vec![],
        };
        for (i, item) in input.iter().enumerate() {
            let outer = self.total.replace(Some(total));
            let next = self.lambda(aggregator, item, Some(i));
            self.total.replace(outer);
            total = next?;
        }
        Ok(total)
    }

    fn arg(&self, args: &[Ast], i: usize, this: &[Item<'a>]) -> Res<'a> {
        match args.get(i) {
            Some(a) => self.eval(a, this, this),
            None => fail("missing argument"),
        }
    }

    fn str_arg(&self, args: &[Ast], i: usize, this: &[Item<'a>]) -> Result<Option<String>, EvalError> {
        Ok(single(&self.arg(args, i, this)?)?.and_then(|x| self.string_of(x)))
    }

    fn int_arg(&self, args: &[Ast], i: usize, this: &[Item<'a>]) -> Result<Option<i64>, EvalError> {
        Ok(match single(&self.arg(args, i, this)?)?.map(sv) {
            Some(Sv::Int(v)) => Some(v),
            None => None,
            _ => return fail("an integer argument is expected"),
        })
    }

    /// The input's single item as a string (empty input: None).
    fn input_str(&self, input: &[Item<'a>]) -> Result<Option<String>, EvalError> {
        match single(input)? {
            None => Ok(None),
            Some(x) => self.string_of(x).map(Some).ok_or_else(|| EvalError("a string function on a non-string".into())),
        }
    }

    fn call(&self, name: &str, input: &[Item<'a>], args: &[Ast], this: &[Item<'a>]) -> Res<'a> {
        let b = |v: bool| Ok(vec![Item::Bool(v)]);
        let opt_bool = |v: Option<bool>| Ok(v.map(Item::Bool).into_iter().collect());
        match name {
            "empty" => b(input.is_empty()),
            "exists" => match args.first() {
                None => b(!input.is_empty()),
                Some(a) => b(!self.filter(input, a)?.is_empty()),
            },
            "not" => opt_bool(truth(input)?.map(|x| !x)),
            "count" => Ok(vec![Item::Int(input.len() as i64)]),
            "first" => Ok(input.first().cloned().into_iter().collect()),
            "last" => Ok(input.last().cloned().into_iter().collect()),
            "tail" => Ok(input.iter().skip(1).cloned().collect()),
            "skip" => {
                Ok(input.iter().skip(self.int_arg(args, 0, this)?.unwrap_or(0).max(0) as usize).cloned().collect())
            }
            "take" => {
                Ok(input.iter().take(self.int_arg(args, 0, this)?.unwrap_or(0).max(0) as usize).cloned().collect())
            }
            "single" => Ok(single(input)?.cloned().into_iter().collect()),
            "where" => {
                let a = args.first().ok_or_else(|| EvalError("where needs a criterion".into()))?;
                self.filter(input, a)
            }
            "select" => {
                let a = args.first().ok_or_else(|| EvalError("select needs a projection".into()))?;
                let mut out = Vec::new();
                for (n, i) in input.iter().enumerate() {
                    out.extend(self.lambda(a, i, Some(n))?);
                }
                Ok(out)
            }
            "all" => {
                let a = args.first().ok_or_else(|| EvalError("all needs a criterion".into()))?;
                for (n, i) in input.iter().enumerate() {
                    if truth(&self.lambda(a, i, Some(n))?)? != Some(true) {
                        return b(false);
                    }
                }
                b(true)
            }
            "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
                let bools: Vec<bool> = input
                    .iter()
                    .map(|i| match sv(i) {
                        Sv::Bool(x) => Ok(x),
                        _ => fail("a boolean collection is expected"),
                    })
                    .collect::<Result<_, _>>()?;
                b(match name {
                    "allTrue" => bools.iter().all(|x| *x),
                    "anyTrue" => bools.iter().any(|x| *x),
                    "allFalse" => bools.iter().all(|x| !*x),
                    _ => bools.iter().any(|x| !*x),
                })
            }
            "isDistinct" => b(self.distinct(input).len() == input.len()),
            "distinct" => Ok(self.distinct(input)),
            "hasValue" => b(matches!(single(input)?, Some(Item::Node(n)) if !n.v.is_null() && !n.v.is_object())),
            "matches" | "replaceMatches" => {
                let Some(s) = self.input_str(input)? else { return Ok(vec![]) };
                let Some(pattern) = self.str_arg(args, 0, this)? else { return Ok(vec![]) };
                // FHIRPath regexes run in single-line mode: `.` matches a newline.
                let re = regex(&format!("(?s){pattern}"))?;
                if name == "matches" {
                    b(re.is_match(&s))
                } else {
                    let Some(with) = self.str_arg(args, 1, this)? else { return Ok(vec![]) };
                    if pattern.is_empty() {
                        return Ok(vec![Item::Str(s)]);
                    }
                    Ok(vec![Item::Str(re.replace_all(&s, with.as_str()).into_owned())])
                }
            }
            "startsWith" | "endsWith" | "contains" => {
                let Some(s) = self.input_str(input)? else { return Ok(vec![]) };
                let Some(p) = self.str_arg(args, 0, this)? else { return Ok(vec![]) };
                b(match name {
                    "startsWith" => s.starts_with(&p),
                    "endsWith" => s.ends_with(&p),
                    _ => s.contains(&p),
                })
            }
            "length" => Ok(self.input_str(input)?.map(|s| Item::Int(s.chars().count() as i64)).into_iter().collect()),
            "lower" | "upper" => Ok(self
                .input_str(input)?
                .map(|s| Item::Str(if name == "lower" { s.to_lowercase() } else { s.to_uppercase() }))
                .into_iter()
                .collect()),
            "substring" => {
                let Some(s) = self.input_str(input)? else { return Ok(vec![]) };
                let chars: Vec<char> = s.chars().collect();
                let Some(start) = self.int_arg(args, 0, this)? else { return Ok(vec![]) };
                if start < 0 || start as usize >= chars.len() {
                    return Ok(vec![]);
                }
                let len = match args.len() {
                    1 => chars.len(),
                    _ => self.int_arg(args, 1, this)?.unwrap_or(0).max(0) as usize,
                };
                let end = (start as usize + len).min(chars.len());
                Ok(vec![Item::Str(chars[start as usize..end].iter().collect())])
            }
            "toString" => Ok(single(input)?.and_then(|i| self.string_of(i)).map(Item::Str).into_iter().collect()),
            "toInteger" => Ok(match single(input)?.map(sv) {
                Some(Sv::Int(v)) => vec![Item::Int(v)],
                Some(Sv::Str(s)) => s.parse::<i64>().ok().map(Item::Int).into_iter().collect(),
                Some(Sv::Bool(v)) => vec![Item::Int(v as i64)],
                _ => vec![],
            }),
            "iif" => {
                let cond = args.first().ok_or_else(|| EvalError("iif needs a condition".into()))?;
                if input.len() > 1 {
                    return fail("iif() takes at most one item");
                }
                let scope = input;
                let decided = self.eval(cond, scope, scope)?;
                if decided.iter().any(|i| !matches!(sv(i), Sv::Bool(_))) {
                    return fail("iif() needs a boolean criterion");
                }
                if truth(&decided)? == Some(true) {
                    self.arg(args, 1, scope)
                } else if args.len() > 2 {
                    self.arg(args, 2, scope)
                } else {
                    Ok(vec![])
                }
            }
            "trace" => Ok(input.to_vec()),
            "children" | "descendants" => {
                let mut out = Vec::new();
                let mut frontier: Vec<Node<'a>> =
                    input.iter().filter_map(|i| if let Item::Node(n) = i { Some(*n) } else { None }).collect();
                while let Some(n) = frontier.pop() {
                    let mut kids = Vec::new();
                    self.model.child_nodes(&n, None, &mut |_, _, c| kids.push(c));
                    out.extend(kids.iter().copied().map(Item::Node));
                    if name == "descendants" {
                        frontier.extend(kids);
                    }
                }
                Ok(out)
            }
            "ofType" | "is" | "as" => {
                let ty = match args.first() {
                    Some(Ast::Member(None, t)) => t.clone(),
                    Some(Ast::Member(Some(ns), t)) => match &**ns {
                        Ast::Member(None, n) if n == "FHIR" || n == "System" => format!("{n}.{t}"),
                        _ => return fail(format!("{name} needs a type name")),
                    },
                    _ => return fail(format!("{name} needs a type name")),
                };
                if name == "as" && input.len() > 1 {
                    return fail("as() takes a single item");
                }
                self.type_op(name == "is", input, &ty)
            }
            "combine" => Ok(input.iter().cloned().chain(self.arg(args, 0, this)?).collect()),
            "union" => {
                let other = self.arg(args, 0, this)?;
                Ok(self.distinct(&input.iter().cloned().chain(other).collect::<Vec<_>>()))
            }
            "intersect" | "exclude" => {
                let other = self.arg(args, 0, this)?;
                let keep = name == "intersect";
                let picked: Vec<Item<'a>> = input
                    .iter()
                    .filter(|i| other.iter().any(|o| self.item_eq(i, o, false) == Some(true)) == keep)
                    .cloned()
                    .collect();
                Ok(if keep { self.distinct(&picked) } else { picked })
            }
            "htmlChecks" => b(input.iter().all(|i| match i {
                Item::Node(n) => n.v.get("div").and_then(Value::as_str).is_none_or(is_safe_xhtml),
                _ => true,
            })),
            "extension" => {
                let url = self.str_arg(args, 0, this)?.unwrap_or_default();
                let mut out = Vec::new();
                for i in input {
                    if let Item::Node(n) = i {
                        let mut push = |_: &'a str, _: Option<usize>, c: Node<'a>| {
                            if c.v.get("url").and_then(Value::as_str) == Some(url.as_str()) {
                                out.push(Item::Node(c));
                            }
                        };
                        self.model.child_nodes(n, Some("extension"), &mut push);
                    }
                }
                Ok(out)
            }
            // References are not resolved while validating one resource.
            "resolve" => Ok(vec![]),
            other => self
                .extended(other, input, args, this)
                .unwrap_or_else(|| fail(format!("function {other}() is not supported"))),
        }
    }

    fn filter(&self, input: &[Item<'a>], crit: &Ast) -> Res<'a> {
        let mut out = Vec::new();
        for (n, i) in input.iter().enumerate() {
            if truth(&self.lambda(crit, i, Some(n))?)? == Some(true) {
                out.push(i.clone());
            }
        }
        Ok(out)
    }

    /// Distinct items by `=`, in one pass: equal items hash alike, and a
    /// hash match is confirmed by `=`.
    fn distinct(&self, input: &[Item<'a>]) -> Coll<'a> {
        let mut buckets: HashMap<u64, Vec<usize>> = HashMap::with_capacity(input.len());
        let mut out: Coll<'a> = Vec::with_capacity(input.len());
        for i in input {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            hash_sv(&sv(i), &mut h);
            let bucket = buckets.entry(h.finish()).or_default();
            if !bucket.iter().any(|&o| self.item_eq(&out[o], i, false) == Some(true)) {
                bucket.push(out.len());
                out.push(i.clone());
            }
        }
        out
    }
}

/// Invariants use a handful of patterns over and over: compile each once per
/// thread.
fn regex(pattern: &str) -> Result<Rc<regex_lite::Regex>, EvalError> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Rc<regex_lite::Regex>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        if let Some(re) = c.borrow().get(pattern) {
            return Ok(re.clone());
        }
        let re = Rc::new(regex_lite::Regex::new(pattern).map_err(|e| EvalError(format!("bad regex: {e}")))?);
        let mut cache = c.borrow_mut();
        // Patterns can come from instance data: bound the cache.
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), re.clone());
        Ok(re)
    })
}

/// The UCUM unit a quantity's unit compares as: a definite calendar
/// duration's (`day` as `d`), else itself.
pub(super) fn ucum_of(unit: &str) -> &str {
    CALENDAR_UNITS.iter().find(|(word, _)| *word == unit).and_then(|(_, ucum)| *ucum).unwrap_or(unit)
}

/// The System types FHIRPath names (`System.Boolean`...).
const SYSTEM_TYPES: &[&str] = &["Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"];

/// The FHIR primitive a primitive specializes (R4 datatypes: `code`, `id`
/// and `markdown` are strings, `url`, `canonical`, `oid` and `uuid` URIs).
fn fhir_supertype(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "code" | "id" | "markdown" => "string",
        "url" | "canonical" | "oid" | "uuid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        _ => return None,
    })
}

/// The System type a FHIR primitive's value is (R4 invariants write
/// `answer is Boolean` for a FHIR `boolean`).
fn system_type(fhir: &str) -> Option<&'static str> {
    Some(match fhir {
        "boolean" => "Boolean",
        "integer" | "positiveInt" | "unsignedInt" => "Integer",
        "decimal" => "Decimal",
        "date" => "Date",
        "dateTime" | "instant" => "DateTime",
        "time" => "Time",
        "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid" | "uuid" | "base64Binary" => {
            "String"
        }
        _ => return None,
    })
}

/// A hash consistent with `=`: numbers by value, JSON by content.
fn hash_sv(v: &Sv, h: &mut impl Hasher) {
    match v {
        Sv::Node(n) => hash_json(n.v, h),
        Sv::Bool(b) => b.hash(h),
        Sv::Int(x) => Decimal::from_int(*x).normalized().hash(h),
        Sv::Dec(x) => x.normalized().hash(h),
        Sv::Str(s) | Sv::Temporal(s) => s.hash(h),
        Sv::Quantity(x, u) => {
            x.to_bits().hash(h);
            u.hash(h);
        }
        Sv::Type(ns, name) => (ns, name).hash(h),
    }
}

fn hash_json(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        Value::Number(n) => Decimal::parse(n.as_str()).map(Decimal::normalized).hash(h),
        Value::String(s) => s.hash(h),
        Value::Array(a) => a.iter().for_each(|x| hash_json(x, h)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            k.hash(h);
            hash_json(x, h);
        }),
    }
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn single<'c, 'a>(c: &'c [Item<'a>]) -> Result<Option<&'c Item<'a>>, EvalError> {
    match c {
        [] => Ok(None),
        [x] => Ok(Some(x)),
        _ => fail("a single item is expected"),
    }
}

/// Singleton evaluation of a collection as a boolean.
fn truth(c: &[Item]) -> Result<Option<bool>, EvalError> {
    match c {
        [] => Ok(None),
        [Item::Bool(b)] => Ok(Some(*b)),
        [Item::Node(Node { v: Value::Bool(b), .. })] => Ok(Some(*b)),
        [_] => Ok(Some(true)),
        _ => fail("a single boolean is expected"),
    }
}
