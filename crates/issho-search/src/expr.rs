//! Search parameter expressions compiled to direct path walkers over the JSON tree.
//!
//! The R4 expressions use a small FHIRPath subset: unions of paths (`A.b | A.c`), type
//! filters (`(A.value as Quantity)`, `A.value.as(Quantity)`, `ofType(T)`), `where(...)` with
//! `resolve() is Type` or `field = 'literal'`, `extension('url')`, an indexer (`[0]`) and
//! `%resource` in composite components. Compilation resolves every step against the R4 type
//! tables, so a choice element (`Observation.effective`) becomes one path per concrete JSON key
//! (`effectiveDateTime`, `effectivePeriod`…) and each path knows the FHIR type it ends at.
//! Anything outside the subset is a compile error, reported by [`compile`].

use issho_model::{R4, TypeDef, r4};
use serde_json::Value;

/// One step of a compiled path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Go to the JSON property (arrays are flattened).
    Key(String),
    /// Keep nodes whose property `.0` is the string `.1`.
    WhereEq(String, String),
    /// Keep references whose target resource type is the given one.
    RefType(String),
    /// Keep only the n-th node of the collection.
    Index(usize),
    /// Restart from the resource root (`%resource`).
    Root,
}

/// A compiled path: steps from the resource root (or, for composite components, from the
/// composite's root node) to values of FHIR type `type_code`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub steps: Vec<Step>,
    pub type_code: String,
    /// The required value set bound to the final element, if any (for `code` values).
    pub binding: Option<String>,
    /// The distinct code systems of that value set.
    pub code_systems: Vec<String>,
    /// Where the path ends in the type tables (used to compile composite components relative
    /// to it): the owning type and the element path inside it.
    pub end_owner: String,
    pub end_prefix: String,
}

impl Path {
    /// Evaluate on `root` (the resource) starting at `start` (the resource itself, or a
    /// composite root node).
    pub fn eval<'v>(&self, root: &'v Value, start: &'v Value) -> Vec<&'v Value> {
        let mut nodes = vec![start];
        for step in &self.steps {
            match step {
                Step::Key(k) => {
                    let mut next = Vec::new();
                    for n in &nodes {
                        match n.get(k) {
                            Some(Value::Array(items)) => next.extend(items.iter()),
                            Some(v) => next.push(v),
                            None => {}
                        }
                    }
                    nodes = next;
                }
                Step::WhereEq(field, lit) => {
                    nodes.retain(|n| n.get(field).and_then(Value::as_str) == Some(lit));
                }
                Step::RefType(t) => {
                    nodes.retain(|n| reference_target_type(n, root).as_deref() == Some(t));
                }
                Step::Index(i) => {
                    nodes = nodes.get(*i).map(|n| vec![*n]).unwrap_or_default();
                }
                Step::Root => nodes = vec![root],
            }
            if nodes.is_empty() {
                break;
            }
        }
        nodes
    }
}

/// The resource type a Reference points at: `Reference.type`, else the type segment of a
/// relative or absolute literal reference, else the type of a contained resource (`#id`).
pub(crate) fn reference_target_type(reference: &Value, root: &Value) -> Option<String> {
    if let Some(t) = reference.get("type").and_then(Value::as_str) {
        return Some(t.rsplit('/').next().unwrap_or(t).to_string());
    }
    let r = reference.get("reference").and_then(Value::as_str)?;
    if let Some(local) = r.strip_prefix('#') {
        return root
            .get("contained")?
            .as_array()?
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(local))?
            .get("resourceType")?
            .as_str()
            .map(str::to_string);
    }
    parse_literal_reference(r).map(|p| p.0)
}

/// Split a literal reference (`Patient/1`, `Patient/1/_history/2`, `http://x/fhir/Patient/1`)
/// into (type, id, version). `None` when it does not end in `Type/id[/_history/v]`.
pub(crate) fn parse_literal_reference(r: &str) -> Option<(String, String, Option<String>)> {
    let r = r.split(['?', '#']).next().unwrap_or(r);
    let segs: Vec<&str> = r.split('/').collect();
    let (t, id, version) = if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        (
            segs[segs.len() - 4],
            segs[segs.len() - 3],
            Some(segs[segs.len() - 1].to_string()),
        )
    } else if segs.len() >= 2 {
        (segs[segs.len() - 2], segs[segs.len() - 1], None)
    } else {
        return None;
    };
    if id.is_empty() || !r4().is_resource_type(t) {
        return None;
    }
    Some((t.to_string(), id.to_string(), version))
}

// ---------------------------------------------------------------------------------------------
// Parsing the expression text.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Var(String),
    Str(String),
    Num(usize),
    Punct(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'%' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = s[start..i].to_string();
            out.push(if c == b'%' {
                Tok::Var(word[1..].to_string())
            } else {
                Tok::Ident(word)
            });
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(s[start..i].parse().map_err(|_| "bad number")?));
        } else if c == b'\'' {
            let end = s[i + 1..].find('\'').ok_or("unterminated string")? + i + 1;
            out.push(Tok::Str(s[i + 1..end].to_string()));
            i = end + 1;
        } else if s[i..].starts_with("!=") {
            out.push(Tok::Punct("!="));
            i += 2;
        } else {
            let p = match c {
                b'.' => ".",
                b'(' => "(",
                b')' => ")",
                b'|' => "|",
                b'[' => "[",
                b']' => "]",
                b'=' => "=",
                _ => return Err(format!("unexpected character '{}'", c as char)),
            };
            out.push(Tok::Punct(p));
            i += 1;
        }
    }
    Ok(out)
}

/// Parsed expression: a union of alternatives, each a sequence of elements.
type Alts = Vec<Vec<Elem>>;

#[derive(Debug, Clone)]
enum Elem {
    Name(String),
    Group(Alts),
    As(String),
    ResolveIs(String),
    WhereEq(String, String),
    Extension(String),
    Index(usize),
    ResourceVar,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
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
    fn expect(&mut self, p: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Punct(q)) if q == p => Ok(()),
            other => Err(format!("expected '{p}', found {other:?}")),
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn union(&mut self) -> Result<Alts, String> {
        let mut alts = vec![self.seq()?];
        while self.is_punct("|") {
            self.pos += 1;
            alts.push(self.seq()?);
        }
        Ok(alts)
    }

    fn seq(&mut self) -> Result<Vec<Elem>, String> {
        let mut elems = Vec::new();
        match self.next() {
            Some(Tok::Punct("(")) => {
                let inner = self.union()?;
                self.expect(")")?;
                elems.push(Elem::Group(inner));
            }
            Some(Tok::Var(v)) if v == "resource" => elems.push(Elem::ResourceVar),
            Some(Tok::Ident(n)) => elems.push(Elem::Name(n)),
            other => return Err(format!("unexpected {other:?}")),
        }
        loop {
            if self.is_punct(".") {
                self.pos += 1;
                elems.push(self.call()?);
            } else if self.is_punct("[") {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Num(n)) => elems.push(Elem::Index(n)),
                    other => return Err(format!("expected an index, found {other:?}")),
                }
                self.expect("]")?;
            } else {
                break;
            }
        }
        if matches!(self.peek(), Some(Tok::Ident(w)) if w == "as") {
            self.pos += 1;
            elems.push(Elem::As(self.ident()?));
        }
        Ok(elems)
    }

    fn call(&mut self) -> Result<Elem, String> {
        let name = self.ident()?;
        if !self.is_punct("(") {
            return Ok(Elem::Name(name));
        }
        self.pos += 1;
        let elem = match name.as_str() {
            "as" | "ofType" => Elem::As(self.ident()?),
            "extension" => match self.next() {
                Some(Tok::Str(url)) => Elem::Extension(url),
                other => return Err(format!("extension() expects a URL, found {other:?}")),
            },
            "where" => {
                let first = self.ident()?;
                if first == "resolve" {
                    self.expect("(")?;
                    self.expect(")")?;
                    match self.ident()?.as_str() {
                        "is" => {}
                        other => return Err(format!("unsupported resolve() use: {other}")),
                    }
                    Elem::ResolveIs(self.ident()?)
                } else {
                    self.expect("=")?;
                    match self.next() {
                        Some(Tok::Str(lit)) => Elem::WhereEq(first, lit),
                        other => return Err(format!("unsupported where() literal {other:?}")),
                    }
                }
            }
            other => return Err(format!("unsupported function {other}()")),
        };
        self.expect(")")?;
        Ok(elem)
    }
}

fn parse(expr: &str) -> Result<Alts, String> {
    let mut p = Parser {
        toks: tokenize(expr)?,
        pos: 0,
    };
    let alts = p.union()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(alts)
}

// ---------------------------------------------------------------------------------------------
// Compiling against the type tables.

#[derive(Clone)]
struct Branch<'a> {
    steps: Vec<Step>,
    owner: &'a TypeDef,
    prefix: String,
    type_code: String,
    binding: Option<String>,
    /// Still at the resource root (a leading type name is a type test, not a field).
    at_root: bool,
}

struct Compiler<'a> {
    r4: &'a R4,
    /// The resource type the expression is compiled for.
    base: &'a TypeDef,
}

impl<'a> Compiler<'a> {
    fn run(&self, elems: &[Elem], start: Vec<Branch<'a>>) -> Result<Vec<Branch<'a>>, String> {
        let mut branches = start;
        for elem in elems {
            let mut next = Vec::new();
            match elem {
                Elem::Group(alts) => {
                    for b in &branches {
                        for alt in alts {
                            next.extend(self.run(alt, vec![b.clone()])?);
                        }
                    }
                }
                Elem::Name(n) => {
                    for b in branches {
                        next.extend(self.field(b, n)?);
                    }
                }
                Elem::As(t) => {
                    let had = !branches.is_empty();
                    next = branches
                        .into_iter()
                        .filter(|b| b.type_code.eq_ignore_ascii_case(t))
                        .collect();
                    if had && next.is_empty() {
                        return Err(format!("no element of type {t} to select"));
                    }
                }
                Elem::ResolveIs(t) => {
                    if !self.r4.is_resource_type(t) {
                        return Err(format!("unknown resource type {t}"));
                    }
                    for mut b in branches {
                        b.steps.push(Step::RefType(t.clone()));
                        next.push(b);
                    }
                }
                Elem::WhereEq(f, lit) => {
                    for mut b in branches {
                        b.steps.push(Step::WhereEq(f.clone(), lit.clone()));
                        next.push(b);
                    }
                }
                Elem::Extension(url) => {
                    for b in branches {
                        for mut e in self.field(b, "extension")? {
                            e.steps.push(Step::WhereEq("url".into(), url.clone()));
                            next.push(e);
                        }
                    }
                }
                Elem::Index(i) => {
                    for mut b in branches {
                        b.steps.push(Step::Index(*i));
                        next.push(b);
                    }
                }
                Elem::ResourceVar => {
                    for mut b in branches {
                        b.steps.push(Step::Root);
                        b.owner = self.base;
                        b.prefix.clear();
                        b.type_code = self.base.name.clone();
                        b.at_root = true;
                        next.push(b);
                    }
                }
            }
            branches = next;
        }
        Ok(branches)
    }

    /// Navigate to child `name` (or, at the root, test the resource type).
    fn field(&self, mut b: Branch<'a>, name: &str) -> Result<Vec<Branch<'a>>, String> {
        if b.at_root {
            b.at_root = false;
            if let Some(t) = self.r4.type_def(name)
                && t.kind == issho_model::TypeKind::Resource
            {
                let applies = name == self.base.name || self.is_ancestor(name);
                return Ok(if applies { vec![b] } else { vec![] });
            }
        }
        let (owner, prefix) = self
            .r4
            .children_scope(b.owner, &b.prefix)
            .ok_or_else(|| format!("cannot descend below {}.{}", b.owner.name, b.prefix))?;
        let direct = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(e) = owner.element(&direct) {
            b.steps.push(Step::Key(name.to_string()));
            b.owner = owner;
            b.type_code = e.types.first().map(|t| t.code.clone()).unwrap_or_default();
            b.binding = e.binding.clone();
            if e.content_ref.is_some() || e.is_backbone() {
                b.prefix = direct;
            } else {
                b.owner = self
                    .r4
                    .type_def(&b.type_code)
                    .ok_or_else(|| format!("unknown type {}", b.type_code))?;
                b.prefix = String::new();
            }
            return Ok(vec![b]);
        }
        let choice = owner
            .element(&format!("{direct}[x]"))
            .ok_or_else(|| format!("unknown element {}.{direct}", owner.name))?;
        let mut out = Vec::new();
        for t in &choice.types {
            let mut c = b.clone();
            let mut key = name.to_string();
            let mut chars = t.code.chars();
            if let Some(first) = chars.next() {
                key.push(first.to_ascii_uppercase());
                key.push_str(chars.as_str());
            }
            c.steps.push(Step::Key(key));
            c.type_code = t.code.clone();
            c.binding = choice.binding.clone();
            c.owner = self
                .r4
                .type_def(&t.code)
                .ok_or_else(|| format!("unknown type {}", t.code))?;
            c.prefix = String::new();
            out.push(c);
        }
        Ok(out)
    }

    fn is_ancestor(&self, name: &str) -> bool {
        let mut t = self.base.base.as_deref();
        while let Some(n) = t {
            if n == name {
                return true;
            }
            t = self.r4.type_def(n).and_then(|d| d.base.as_deref());
        }
        false
    }
}

fn finish(branches: Vec<Branch<'_>>) -> Vec<Path> {
    let mut out: Vec<Path> = Vec::new();
    for b in branches {
        let p = Path {
            steps: b.steps,
            type_code: b.type_code,
            code_systems: b
                .binding
                .as_deref()
                .and_then(|vs| r4().value_set(vs))
                .map(|set| {
                    let mut v: Vec<String> = set.iter().map(|(s, _)| s.clone()).collect();
                    v.sort();
                    v.dedup();
                    v
                })
                .unwrap_or_default(),
            binding: b.binding,
            end_owner: b.owner.name.clone(),
            end_prefix: b.prefix,
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Compile `expr` for resources of type `base`. Alternatives that apply to other resource
/// types are dropped; it is an error when none is left.
pub(crate) fn compile(expr: &str, base: &str) -> Result<Vec<Path>, String> {
    let r4 = r4();
    let base_def = r4
        .type_def(base)
        .ok_or_else(|| format!("unknown type {base}"))?;
    let alts = parse(expr)?;
    let c = Compiler { r4, base: base_def };
    let start = Branch {
        steps: Vec::new(),
        owner: base_def,
        prefix: String::new(),
        type_code: base.to_string(),
        binding: None,
        at_root: true,
    };
    let mut branches = Vec::new();
    for alt in &alts {
        branches.extend(c.run(alt, vec![start.clone()])?);
    }
    if branches.is_empty() {
        return Err(format!("no path applies to {base}"));
    }
    Ok(finish(branches))
}

/// Compile a composite component expression relative to where `root` ends.
pub(crate) fn compile_relative(expr: &str, base: &str, root: &Path) -> Result<Vec<Path>, String> {
    let r4 = r4();
    let base_def = r4
        .type_def(base)
        .ok_or_else(|| format!("unknown type {base}"))?;
    let owner = r4
        .type_def(&root.end_owner)
        .ok_or_else(|| format!("unknown type {}", root.end_owner))?;
    let alts = parse(expr)?;
    let c = Compiler { r4, base: base_def };
    let start = Branch {
        steps: Vec::new(),
        owner,
        prefix: root.end_prefix.clone(),
        type_code: root.type_code.clone(),
        binding: None,
        at_root: false,
    };
    let mut branches = Vec::new();
    for alt in &alts {
        branches.extend(c.run(alt, vec![start.clone()])?);
    }
    if branches.is_empty() {
        return Err(format!("component '{expr}' selects nothing"));
    }
    Ok(finish(branches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(p: &Path) -> String {
        p.steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => k.clone(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    #[test]
    fn choices_expand_to_concrete_keys() {
        let p = compile("Observation.effective", "Observation").unwrap();
        let ks: Vec<_> = p.iter().map(|p| (keys(p), p.type_code.clone())).collect();
        assert!(ks.contains(&("effectiveDateTime".into(), "dateTime".into())));
        assert!(ks.contains(&("effectivePeriod".into(), "Period".into())));
        assert_eq!(ks.len(), 4);
        let p = compile(
            "(Observation.value as Quantity) | (Observation.value as SampledData)",
            "Observation",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(keys(&p[0]), "valueQuantity");
        let p = compile(
            "Condition.onset.as(Age) | Condition.onset.as(Range)",
            "Condition",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        let p = compile("(Observation.value as CodeableConcept).text", "Observation").unwrap();
        assert_eq!(keys(&p[0]), "valueCodeableConcept.text");
        assert_eq!(p[0].type_code, "string");
    }

    #[test]
    fn unions_filter_by_base() {
        let e = "AllergyIntolerance.code | Condition.code | (MedicationRequest.medication as CodeableConcept)";
        assert_eq!(compile(e, "Condition").unwrap().len(), 1);
        let p = compile(e, "MedicationRequest").unwrap();
        assert_eq!(keys(&p[0]), "medicationCodeableConcept");
        assert!(compile(e, "Patient").is_err());
        let p = compile("name | alias", "InsurancePlan").unwrap();
        assert_eq!(p.len(), 2);
        let p = compile("Resource.meta.tag", "Patient").unwrap();
        assert_eq!(keys(&p[0]), "meta.tag");
    }

    #[test]
    fn where_filters_and_evaluation() {
        let p = compile("Patient.telecom.where(system='phone')", "Patient").unwrap();
        let pat = json!({"resourceType": "Patient", "telecom": [
            {"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
            "contained": [{"resourceType": "Patient", "id": "p1"}]});
        assert_eq!(p[0].eval(&pat, &pat).len(), 1);
        let p = compile(
            "Observation.subject.where(resolve() is Patient)",
            "Observation",
        )
        .unwrap();
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/1"}});
        assert_eq!(p[0].eval(&obs, &obs).len(), 1);
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Group/1"}});
        assert_eq!(p[0].eval(&obs, &obs).len(), 0);
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "#p1"},
            "contained": [{"resourceType": "Patient", "id": "p1"}]});
        assert_eq!(p[0].eval(&obs, &obs).len(), 1);
        let p = compile("Bundle.entry[0].resource", "Bundle").unwrap();
        let b = json!({"entry": [{"resource": {"id": "a"}}, {"resource": {"id": "b"}}]});
        assert_eq!(p[0].eval(&b, &b), vec![&json!({"id": "a"})]);
        let p = compile("Patient.extension('http://x')", "Patient").unwrap();
        let pat =
            json!({"extension": [{"url": "http://x", "valueString": "1"}, {"url": "http://y"}]});
        assert_eq!(p[0].eval(&pat, &pat).len(), 1);
    }

    #[test]
    fn composite_components_compile_relative() {
        let roots = compile("Observation | Observation.component", "Observation").unwrap();
        assert_eq!(roots.len(), 2);
        for r in &roots {
            let c = compile_relative("value.as(Quantity)", "Observation", r).unwrap();
            assert_eq!(keys(&c[0]), "valueQuantity");
        }
        let root = compile("MolecularSequence.variant", "MolecularSequence").unwrap();
        let c = compile_relative(
            "%resource.referenceSeq.chromosome",
            "MolecularSequence",
            &root[0],
        )
        .unwrap();
        assert_eq!(c[0].steps[0], Step::Root);
    }

    #[test]
    fn literal_references() {
        assert_eq!(
            parse_literal_reference("Patient/1/_history/2"),
            Some(("Patient".into(), "1".into(), Some("2".into())))
        );
        assert_eq!(
            parse_literal_reference("http://x.org/fhir/Observation/a").map(|r| r.0),
            Some("Observation".into())
        );
        assert_eq!(parse_literal_reference("urn:uuid:1234"), None);
        assert_eq!(parse_literal_reference("Foo/1"), None);
    }
}
