//! The FHIRPath subset that the invariants of FHIR R4 and of the profiles
//! medrec validates against are written in. Maintained Rust engines exist,
//! but each pulls in a web framework or a parser-combinator and diagnostics
//! stack that would dominate the build of every Lambda (see
//! docs/decisions/0004); this one is small and evaluates over the same
//! generated model as the structural validator. Unsupported functions make
//! an expression "not evaluated", never a false error.

mod eval;
mod number;
mod parse;
mod temporal;

pub use eval::{Env, EvalError, Item, Node};
pub use number::Decimal;
pub use parse::{parse, Ast, Op, ParseError};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::model;
    use serde_json::json;

    fn eval(resource: &serde_json::Value, expr: &str) -> Result<Vec<String>, EvalError> {
        let root = model().resource_node(resource).expect("a resource");
        let env = Env::new(model(), root, root, root, false);
        let out = env.evaluate(&parse(expr).expect("parses"))?;
        Ok(out
            .into_iter()
            .map(|i| match i {
                Item::Node(n) => n.v.to_string(),
                Item::Bool(b) => b.to_string(),
                Item::Int(v) => v.to_string(),
                Item::Str(s) | Item::Temporal(s) => s,
                other => format!("{other:?}"),
            })
            .collect())
    }

    fn obs() -> serde_json::Value {
        json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}, {"system": "s", "code": "hr"}]},
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            "effectiveDateTime": "2020-01-02T10:00:00Z",
            "_status": {"extension": [{"url": "u", "valueString": "x"}]}
        })
    }

    #[test]
    fn choice_elements_and_types_come_from_the_model() {
        let o = obs();
        assert_eq!(eval(&o, "value.value").unwrap(), ["72"]);
        assert_eq!(eval(&o, "value is Quantity").unwrap(), ["true"]);
        assert_eq!(eval(&o, "value.ofType(Quantity).code").unwrap(), ["\"/min\""]);
        assert_eq!(eval(&o, "effective is dateTime").unwrap(), ["true"]);
        assert_eq!(eval(&o, "Observation.status").unwrap(), ["\"final\""]);
        assert_eq!(eval(&o, "valueQuantity.exists()").unwrap(), ["false"], "FHIRPath names the element `value`");
        assert_eq!(eval(&o, "status.extension.url").unwrap(), ["\"u\""]);
        assert_eq!(eval(&o, "status.hasValue()").unwrap(), ["true"]);
    }

    #[test]
    fn collections_logic_and_functions() {
        let o = obs();
        assert_eq!(eval(&o, "code.coding.where(system = %loinc).code").unwrap(), ["\"8867-4\""]);
        assert_eq!(eval(&o, "code.coding.count()").unwrap(), ["2"]);
        assert_eq!(eval(&o, "code.coding.code.isDistinct()").unwrap(), ["true"]);
        assert_eq!(eval(&o, "code.coding.all(code.exists())").unwrap(), ["true"]);
        assert_eq!(eval(&o, "code.coding.select(system & '|' & code).first()").unwrap(), ["http://loinc.org|8867-4"]);
        assert_eq!(eval(&o, "value.value > 0 and value.value < 300").unwrap(), ["true"]);
        assert_eq!(eval(&o, "(1 | 2 | 2).count() = 2").unwrap(), ["true"]);
        assert_eq!(eval(&o, "'abc'.substring(1) = 'bc' and 'abc'.matches('^a.c$')").unwrap(), ["true"]);
        assert_eq!(eval(&o, "iif(subject.exists(), 1, 2)").unwrap(), ["2"]);
        assert_eq!(eval(&o, "code.coding.intersect(%resource.code.coding).count()").unwrap(), ["2"]);
        // Three-valued logic: empty propagates except where the spec decides.
        assert!(eval(&o, "subject.exists().not() and note.text = 'x'").unwrap().is_empty());
        assert_eq!(eval(&o, "false and note.text = 'x'").unwrap(), ["false"]);
        assert_eq!(eval(&o, "note.text = 'x' implies false").unwrap(), Vec::<String>::new());
        assert_eq!(eval(&o, "{} implies true").unwrap(), ["true"]);
    }

    #[test]
    fn precision_comparability_and_escapes() {
        let o = obs();
        assert_eq!(eval(&o, "1.58700.precision()").unwrap(), ["5"]);
        assert_eq!(eval(&o, "effective.precision()").unwrap(), ["14"], "2020-01-02T10:00:00Z, the zone aside");
        assert_eq!(eval(&o, "@T10:30.precision()").unwrap(), ["4"]);
        assert!(eval(&o, "'abc'.precision()").is_err());
        assert_eq!(eval(&o, "1 'cm'.comparable(1 '[in_i]')").unwrap(), ["true"]);
        assert_eq!(eval(&o, "1 'cm'.comparable(1 's')").unwrap(), ["false"]);
        assert!(eval(&o, "1.comparable(1 's')").is_err());
        assert_eq!(eval(&o, "'a<b & \\'c\\''.escape('html')").unwrap(), ["a&lt;b &amp; &#39;c&#39;"]);
        assert_eq!(eval(&o, "'&lt;&#x41;&#66;&amp;&bogus;'.unescape('html')").unwrap(), ["<AB&&bogus;"]);
        assert_eq!(eval(&o, "'a\\nb'.escape('json')").unwrap(), ["a\\nb"]);
        assert_eq!(eval(&o, "'a\\\\nb\\\\u0041'.unescape('json')").unwrap(), ["a\nbA"]);
        assert_eq!(eval(&o, "'bad\\\\u00'.unescape('json')").unwrap(), Vec::<String>::new());
        assert!(eval(&o, "'x'.escape('xml')").is_err());
    }

    #[test]
    fn type_names_fhir_and_system_types() {
        let o = obs();
        assert_eq!(eval(&o, "status.type().name").unwrap(), ["code"]);
        assert_eq!(eval(&o, "status.type().namespace").unwrap(), ["FHIR"]);
        assert_eq!(eval(&o, "value.type().name").unwrap(), ["Quantity"]);
        assert_eq!(eval(&o, "Observation.type().name").unwrap(), ["Observation"]);
        assert_eq!(
            eval(&o, "(1.5).type().name & (1).type().name & @T10:00.type().name").unwrap(),
            ["DecimalIntegerTime"]
        );
        assert_eq!(eval(&o, "'x'.type().namespace").unwrap(), ["System"]);
        assert_eq!(eval(&o, "status.type() = code.coding.code.first().type()").unwrap(), ["true"]);
        assert_eq!(eval(&o, "status.type() = 'x'.type()").unwrap(), ["false"]);
        assert!(eval(&o, "status.type() + 1").is_err());
        assert!(eval(&o, "subject.type()").unwrap().is_empty());
        assert_eq!(eval(&o, "Observation.is(System.Observation)").unwrap(), ["false"]);
        assert!(eval(&o, "Observation.is(FHIR.Observatoin)").is_err(), "a misspelt FHIR type is an error");
    }

    #[test]
    fn conforms_to_r4_types_only() {
        let o = obs();
        let core = |t: &str| format!("conformsTo('http://hl7.org/fhir/StructureDefinition/{t}')");
        assert_eq!(eval(&o, &core("Observation")).unwrap(), ["true"]);
        assert_eq!(eval(&o, &core("DomainResource")).unwrap(), ["true"]);
        assert_eq!(eval(&o, &core("Patient")).unwrap(), ["false"]);
        assert!(eval(&o, &core("NoSuchType")).is_err());
        assert!(eval(&o, "conformsTo('http://hl7.org/fhir/StructureDefinition/vitalsigns')").is_err());
    }

    #[test]
    fn index_total_and_aggregate() {
        let o = obs();
        assert_eq!(eval(&o, "code.coding.select($index)").unwrap(), ["0", "1"]);
        assert_eq!(eval(&o, "code.coding.where($index = 1).code").unwrap(), ["\"hr\""]);
        // An inner iteration has its own $index; the outer one is back after it.
        assert_eq!(eval(&o, "code.coding.select((7 | 8).select($index).count() + $index)").unwrap(), ["2", "3"]);
        assert_eq!(eval(&o, "(1 | 2 | 3).aggregate($this + $total, 10)").unwrap(), ["16"]);
        assert_eq!(
            eval(&o, "(4 | 2 | 9).aggregate(iif($total.empty() or $this > $total, $this, $total))").unwrap(),
            ["9"]
        );
        assert!(eval(&o, "{}.aggregate($this + $total, 5) = 5").unwrap() == ["true"]);
        for outside in ["$index", "$total", "code.coding.select($total)", "code.coding.repeat($index)"] {
            assert!(eval(&o, outside).is_err(), "{outside}");
        }
    }

    #[test]
    fn what_is_outside_the_subset_is_an_error_not_an_answer() {
        let o = obs();
        assert!(eval(&o, "code.memberOf('http://x')").is_err());
        assert!(eval(&o, "%unknownVariable").is_err());
        assert!(eval(&o, "code.exists() and code.coding.code.not()").is_err(), "a collection is not a boolean");
        // The left side alone decides: the right is not evaluated.
        assert_eq!(eval(&o, "code.empty() and code.coding.code.not()").unwrap(), ["false"]);
    }
}
