//! What can be known of a SNOMED CT code without the terminology: the form
//! of a concept id (6 to 18 digits, a concept partition, a Verhoeff check
//! digit: SNOMED CT Technical Implementation Guide §6.6) and the grammar of
//! an Expression Constraint (ECL 2.x). medrec has no SNOMED release, so a
//! well-formed id that names no concept passes; one with a slip of the
//! keyboard (`276885007x`, a dropped digit) fails its check digit.

pub const SYSTEM: &str = "http://snomed.info/sct";

/// Whether `code` is a SNOMED CT concept id or a compositional-grammar
/// expression built of well-formed ones: terms (`|...|`) and strings are
/// skipped; any other letter, or a malformed id, fails.
pub fn is_code(code: &str) -> bool {
    let mut rest = code;
    let mut digits = String::new();
    let mut ids = 0;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '0'..='9' => digits.push(c),
            '|' | '"' => match rest.find(c) {
                Some(end) => rest = &rest[end + 1..],
                None => return false,
            },
            // A concrete value (`#500`): a number, not an id.
            '#' => rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '+')),
            c if c.is_ascii_whitespace() || ":=,{}()+".contains(c) => {}
            _ => return false,
        }
        if !digits.is_empty() && !rest.starts_with(|c: char| c.is_ascii_digit()) {
            if !is_concept_id(&digits) {
                return false;
            }
            ids += 1;
            digits.clear();
        }
    }
    ids > 0
}

/// 6 to 18 digits, no leading zero, partition `00` or `10` (a concept), a
/// valid Verhoeff check digit.
pub fn is_concept_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=18).contains(&b.len())
        && b.iter().all(u8::is_ascii_digit)
        && b[0] != b'0'
        && matches!(&id[id.len() - 3..id.len() - 1], "00" | "10")
        && verhoeff_ok(id)
}

fn verhoeff_ok(id: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let check =
        id.bytes().rev().enumerate().fold(0u8, |c, (i, b)| D[c as usize][P[i % 8][(b - b'0') as usize] as usize]);
    check == 0
}

/// Whether `ecl` parses as an Expression Constraint. Refinements (after
/// `:`) and dotted attributes are read only as far as their brackets; what
/// is outside them must follow the grammar, so a constraint with a dangling
/// operator (`234234 << 234234`) fails.
pub fn is_ecl(ecl: &str) -> bool {
    let tokens = match tokens(ecl) {
        Some(t) if !t.is_empty() => t,
        _ => return false,
    };
    let mut at = 0;
    expression(&tokens, &mut at, 0) && at == tokens.len()
}

/// Brackets nest at most this deep: the parser recurses per bracket, and a
/// request must not choose how deep the stack goes.
const MAX_DEPTH: usize = 32;

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Id(&'a str),
    Any,
    Op(&'a str),
    Word(String),
    Open,
    Close,
    Refinement,
}

fn tokens(s: &str) -> Option<Vec<Token<'_>>> {
    let mut out = vec![];
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let (token, len) = if let Some(after) = rest.strip_prefix('|') {
            // A term: skipped, it belongs to the id before it.
            (None, after.find('|')? + 2)
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            let len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            (Some(Token::Id(&rest[..len])), len)
        } else if let Some(op) = ["<<!", ">>!", "!!<", "!!>", "<<", ">>", "<!", ">!", "<", ">", "^", ","]
            .into_iter()
            .find(|op| rest.starts_with(op))
        {
            (Some(Token::Op(op)), op.len())
        } else if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            (Some(Token::Word(rest[..len].to_ascii_uppercase())), len)
        } else {
            match rest.as_bytes()[0] {
                b'*' => (Some(Token::Any), 1),
                b'(' => (Some(Token::Open), 1),
                b')' => (Some(Token::Close), 1),
                b':' | b'{' | b'.' => (Some(Token::Refinement), rest.len()),
                _ => return None,
            }
        };
        out.extend(token);
        rest = rest[len..].trim_start();
    }
    Some(out)
}

fn expression(t: &[Token], at: &mut usize, depth: usize) -> bool {
    if !sub_expression(t, at, depth) {
        return false;
    }
    while let Some(tok) = t.get(*at) {
        let binary =
            matches!(tok, Token::Op(",")) || matches!(tok, Token::Word(w) if w == "AND" || w == "OR" || w == "MINUS");
        if !binary {
            break;
        }
        *at += 1;
        if !sub_expression(t, at, depth) {
            return false;
        }
    }
    true
}

fn sub_expression(t: &[Token], at: &mut usize, depth: usize) -> bool {
    while matches!(t.get(*at), Some(Token::Op(op)) if *op != ",")
        || matches!(t.get(*at), Some(Token::Word(w)) if w == "MEMBEROF")
    {
        *at += 1;
    }
    let ok = match t.get(*at) {
        Some(Token::Id(id)) => is_concept_id(id),
        Some(Token::Any) => true,
        Some(Token::Open) if depth < MAX_DEPTH => {
            *at += 1;
            if !expression(t, at, depth + 1) || t.get(*at) != Some(&Token::Close) {
                return false;
            }
            true
        }
        _ => false,
    };
    if ok {
        *at += 1;
        if t.get(*at) == Some(&Token::Refinement) {
            *at += 1;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concept_ids_carry_their_check_digit() {
        for good in ["276885007", "386661006", "22298006", "404684003", "138875005", "900000000000207008"] {
            assert!(is_concept_id(good), "{good}");
            assert!(is_code(good), "{good}");
        }
        for bad in ["1", "2", "276885007x", "276885008", "27688507", "0276885007", "something", ""] {
            assert!(!is_code(bad), "{bad}");
        }
        assert!(is_code("397956004 |Prosthetic arthroplasty of the hip| : 260686004 |Method| = 129357001"));
        assert!(!is_code("397956004 : method = 129357001"));
    }

    #[test]
    fn expression_constraints_parse() {
        for good in [
            "<< 404684003 |Clinical finding|",
            "< 19829001 AND < 301867009",
            "(< 19829001 OR < 301867009) MINUS << 233604007",
            "^ 700043003",
            "*",
            "< 404684003: 363698007 = << 39057004",
            "memberOf 700043003",
        ] {
            assert!(is_ecl(good), "{good}");
        }
        let deep = format!("{}< 404684003{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(!is_ecl(&deep), "nesting is bounded, and refused past the bound");
        for bad in ["234234 << 234234", "<< 234234", "< 19829001 AND", "(< 19829001", "", "<< 404684003 404684003"] {
            assert!(!is_ecl(bad), "{bad}");
        }
    }
}
