//! Parsing a search request into a [`SearchQuery`].

use crate::expr::parse_literal_reference;
use crate::extract::UCUM;
use crate::fulltext::{TextField, fts_query};
use crate::registry::{ParamKind, Registry, SearchParam, Source};
use crate::values::{
    Decimal, Micros, normalize, parse_date_range, parse_decimal, split_escaped, ucum_canonical,
    unescape,
};
use issho_model::{Issue, IssueType, r4};

/// A comparison prefix of date, number and quantity values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    fn from_code(s: &str) -> Option<Prefix> {
        Some(match s {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    /// Default: the normalised value starts with the normalised search text.
    StartsWith,
    /// `:contains`: the normalised value contains the normalised search text.
    Contains,
    /// `:exact`: the value equals the search text exactly (case, accents, width).
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    /// `:above`: the stored URI is a prefix of the search value.
    Above,
    /// `:below`: the stored URI starts with the search value.
    Below,
}

/// One value of a search parameter (the values of one parameter are ORed).
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// `system|code`; `None` = any, `Some("")` = no system.
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// Token `:text`: normalised prefix of a display or text.
    TokenText(String),
    /// Token `:in` / `:not-in`: the codes of a value set (`url[|version]`, or `ValueSet/id`).
    /// Must be resolved to a [`Match::TokenSet`] before the query runs
    /// ([`SearchQuery::resolve_terminology`]); unresolved it matches nothing.
    ValueSet(String),
    /// Token `:below` (`above` false) / `:above`: the code and the codes it subsumes (or
    /// that subsume it) in its code system's hierarchy. Resolved like [`Match::ValueSet`].
    Subsumption {
        system: Option<String>,
        code: String,
        above: bool,
    },
    /// Any of these (system, code) pairs (a resolved value set or hierarchy).
    TokenSet(Vec<(String, String)>),
    /// A code in any of these code systems (as stored system ids): a `code` without system,
    /// resolved against the systems the index holds for it, so that it can be probed.
    TokenSystems {
        code: String,
        systems: Vec<i64>,
    },
    /// Token `:of-type`: Identifier.type system and code, and Identifier.value.
    OfType {
        system: String,
        code: String,
        value: String,
    },
    String {
        mode: StringMode,
        value: String,
    },
    /// A literal reference `[Type/]id[/_history/version]`.
    Reference {
        ref_type: Option<String>,
        id: String,
        version: Option<String>,
    },
    /// An absolute or canonical reference (`url[|version]`).
    ReferenceUrl {
        url: String,
        version: Option<String>,
    },
    /// Reference `:above` / `:below` on an absolute or canonical URL (prefix hierarchy).
    ReferenceUrlHierarchy {
        mode: UriMode,
        url: String,
    },
    /// Reference `:identifier`.
    ReferenceIdentifier {
        system: Option<String>,
        value: String,
    },
    /// A date range `[lo, hi]` (microseconds, inclusive) and a prefix.
    Date {
        prefix: Prefix,
        lo: Micros,
        hi: Micros,
    },
    Number {
        prefix: Prefix,
        value: Decimal,
    },
    /// A quantity; with `canonical`, value and code are already in UCUM base units.
    Quantity {
        prefix: Prefix,
        value: Decimal,
        system: Option<String>,
        code: Option<String>,
        canonical: bool,
    },
    Uri {
        mode: UriMode,
        value: String,
    },
    /// One match per component, all to be met by the same composite value.
    Composite(Vec<Match>),
    /// `near`: a position within `distance_m` metres (great circle) of (`lat`, `lon`).
    Near {
        lat: f64,
        lon: f64,
        distance_m: f64,
    },
}

/// What a filter tests. All filters of a query are ANDed.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Any of `matches` holds for a row of one of `keys` (with `negate`: none does).
    Values {
        keys: Vec<String>,
        kind: ParamKind,
        components: Vec<ParamKind>,
        matches: Vec<Match>,
        negate: bool,
    },
    /// `:missing=true|false`.
    Missing {
        keys: Vec<String>,
        kind: ParamKind,
        missing: bool,
    },
    /// `_id` (with `negate` for `:not`).
    Id { ids: Vec<String>, negate: bool },
    /// `_lastUpdated`: ORed date matches against `resources.last_updated`.
    LastUpdated(Vec<Match>),
    /// Chained parameter: a reference in `keys` points at a resource of `target_types`
    /// that passes `inner`.
    Chain {
        keys: Vec<String>,
        target_types: Vec<String>,
        inner: Box<Test>,
    },
    /// None of the resources that pass every one of these tests (`NOT (a AND b …)`): engine
    /// conditions such as "not a resource of a patient who refused this category, carrying
    /// that category's label". Never parsed from a URL.
    NotAll(Vec<Test>),
    /// Resources of these persons' records (the store's `person` column, the distribution
    /// key): engine access conditions over many patients. Never parsed from a URL.
    PersonIn(Vec<String>),
    /// `_has`: a resource of `source_type` that passes `inner` refers to this one through
    /// (the rows of) `keys`.
    Has {
        source_type: String,
        keys: Vec<String>,
        inner: Box<Test>,
    },
    /// `_text` / `_content`: the FTS5 query (built from issho's own tokens, see `fulltext`)
    /// matches the narrative or the content.
    FullText { field: TextField, query: String },
    /// Every one of these tests holds (engine conditions, e.g. a chain's target must also be
    /// visible to the caller). Never parsed from a URL.
    All(Vec<Test>),
    /// At least one of these tests holds (`Any(vec![])` never does). Never parsed from a URL.
    Any(Vec<Test>),
    /// The resource is of one of these types. Never parsed from a URL.
    Type(Vec<String>),
    /// The resource's row key is one of these (re-checking a remembered page). Never parsed
    /// from a URL.
    Rids(Vec<i64>),
    /// Shared data (no person) or the record of one of these persons: the access condition
    /// for types that hold a patient's data only when they refer to one. Never parsed from a
    /// URL.
    PersonOrShared(Vec<String>),
}

/// Finds the (system, code) pairs of a value-set or hierarchy match (see
/// [`SearchQuery::resolve_terminology`]).
pub type Resolver<'a> = dyn FnMut(&Match) -> Result<Vec<(String, String)>, Issue> + 'a;

/// One parsed search parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The parameter name as written (`subject:Patient.name`).
    pub name: String,
    pub test: Test,
}

/// How to order results by one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub code: String,
    pub descending: bool,
    pub(crate) by: SortBy,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortBy {
    Id,
    LastUpdated,
    Index { kind: ParamKind, keys: Vec<String> },
}

/// An `_include` or `_revinclude`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// The resource type holding the reference (`Observation` in `Observation:subject`).
    pub source_type: String,
    /// The reference parameter code, `*` for all.
    pub code: String,
    /// Optional target type restriction (`Observation:subject:Patient`).
    pub target_type: Option<String>,
    /// `:iterate` (or the older `:recurse`).
    pub iterate: bool,
    pub(crate) keys: Vec<String>,
}

/// `_total`: whether and how precisely to report the number of matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TotalMode {
    /// `_total` absent: the server's choice (issho reports the total when it is known without
    /// counting every match, i.e. when the first window of results holds them all).
    #[default]
    Auto,
    /// `_total=none`: no total.
    None,
    /// `_total=estimate`.
    Estimate,
    /// `_total=accurate`.
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// The searched type; `None` for a system-level search.
    pub resource_type: Option<String>,
    /// `_type` of a system-level search (empty = all types).
    pub types: Vec<String>,
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    /// `_count`: page size (`None` = the server's default).
    pub count: Option<usize>,
    /// `_offset`: rows to skip (paging).
    pub offset: usize,
    pub total: TotalMode,
    pub summary: Option<Summary>,
    /// `_elements`, as given.
    pub elements: Vec<String>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    /// The parameters that were understood and applied, in order (for the `self` link).
    pub used: Vec<(String, String)>,
    /// Ignored parameters (lenient handling) and other notes.
    pub warnings: Vec<Issue>,
    /// Only resources with `rid` in this half-open range `(after, upto]` (set by the engine to
    /// continue a result set in `rid` order over a snapshot; never from the URL).
    pub rid_after: Option<i64>,
    pub rid_upto: Option<i64>,
    /// Filters (by index) that are chains or `_has` matching many resources: checked per
    /// candidate when another condition drives the query (set by the engine from
    /// [`crate::sqlite_link_breadth`]).
    pub probe: Vec<usize>,
}

impl SearchQuery {
    /// True when the query has `_include` or `_revinclude` rules.
    /// Replace every value-set and hierarchy match ([`Match::ValueSet`],
    /// [`Match::Subsumption`]), also inside chains and `_has`, by the codes `resolve` finds for
    /// it. Errors of `resolve` (unknown value set, too large…) are returned together.
    pub fn resolve_terminology(&mut self, resolve: &mut Resolver<'_>) -> Result<(), Vec<Issue>> {
        fn walk(t: &mut Test, resolve: &mut Resolver<'_>, errors: &mut Vec<Issue>) {
            match t {
                Test::Values { matches, .. } => {
                    for m in matches.iter_mut() {
                        if matches!(m, Match::ValueSet(_) | Match::Subsumption { .. }) {
                            match resolve(m) {
                                Ok(codes) => *m = Match::TokenSet(codes),
                                Err(e) => errors.push(e),
                            }
                        }
                    }
                }
                Test::Chain { inner, .. } | Test::Has { inner, .. } => walk(inner, resolve, errors),
                Test::All(ts) | Test::Any(ts) | Test::NotAll(ts) => {
                    ts.iter_mut().for_each(|t| walk(t, resolve, errors))
                }
                _ => {}
            }
        }
        let mut errors = Vec::new();
        for f in &mut self.filters {
            walk(&mut f.test, resolve, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn has_includes(&self) -> bool {
        !self.include.is_empty() || !self.revinclude.is_empty()
    }
    /// True when some include rule has `:iterate`.
    pub fn has_iterate_includes(&self) -> bool {
        self.include
            .iter()
            .chain(&self.revinclude)
            .any(|i| i.iterate)
    }
    /// The parameters that were understood and applied, in request order (for the `self`
    /// and paging links of the result Bundle). Ignored parameters are left out.
    pub fn canonical_params(&self) -> Vec<(String, String)> {
        self.used.clone()
    }
}

/// Why a parameter was not accepted.
enum Fail {
    /// Unknown or unsupported parameter: ignored with a warning unless strict.
    Unknown(Issue),
    /// Malformed: always an error.
    Invalid(Issue),
}

fn invalid(name: &str, msg: impl Into<String>) -> Fail {
    Fail::Invalid(Issue::error(IssueType::Invalid, msg).at(name))
}

fn not_supported(name: &str, msg: impl Into<String>) -> Fail {
    Fail::Invalid(Issue::error(IssueType::NotSupported, msg).at(name))
}

fn unknown(name: &str, msg: impl Into<String>) -> Fail {
    Fail::Unknown(Issue::error(IssueType::NotSupported, msg).at(name))
}

/// Parameters of the HTTP layer, not of search: accepted and ignored here.
const TRANSPORT: [&str; 2] = ["_format", "_pretty"];

/// Parse a search request (URL-decoded name/value pairs, in order) for `resource_type`
/// (`None` = system-level search).
///
/// With `strict` (`Prefer: handling=strict`) an unknown or unsupported parameter is an error;
/// otherwise it is ignored and listed in `warnings`. Malformed values, unknown or misplaced
/// modifiers and broken chains are errors either way.
pub fn parse(
    resource_type: Option<&str>,
    params: &[(String, String)],
    strict: bool,
) -> Result<SearchQuery, Vec<Issue>> {
    parse_in(Registry::r4(), resource_type, params, strict)
}

/// Most parameters (name/value pairs) one search may have.
pub const MAX_PARAMS: usize = 200;
/// Most values over all parameters of one search (each comma-separated value counts): SQLite
/// refuses statements beyond about 500 compound terms or 1,000 levels of expression.
pub const MAX_VALUES: usize = 400;

/// [`parse`] against `reg` (the R4 parameters plus a deployment's custom ones).
pub fn parse_in(
    reg: &Registry,
    resource_type: Option<&str>,
    params: &[(String, String)],
    strict: bool,
) -> Result<SearchQuery, Vec<Issue>> {
    let values: usize = params.iter().map(|(_, v)| v.split(',').count()).sum();
    if params.len() > MAX_PARAMS || values > MAX_VALUES {
        return Err(vec![Issue::error(
            IssueType::TooCostly,
            format!(
                "this search has {} parameters and {values} values; at most {MAX_PARAMS} \
                 parameters and {MAX_VALUES} values (commas count) are accepted in one search \
                 — split it into several",
                params.len()
            ),
        )]);
    }
    let mut q = SearchQuery {
        resource_type: resource_type.map(str::to_string),
        ..SearchQuery::default()
    };
    let mut errors = Vec::new();
    let mut fail = |f: Fail, warnings: &mut Vec<Issue>| match f {
        Fail::Unknown(i) if !strict => {
            let mut w = i;
            w.severity = issho_model::Severity::Warning;
            w.diagnostics = format!("{} (ignored)", w.diagnostics);
            warnings.push(w);
        }
        Fail::Unknown(i) | Fail::Invalid(i) => errors.push(i),
    };
    let context: Vec<String> = match resource_type {
        Some(t) if r4().is_resource_type(t) => vec![t.to_string()],
        Some(t) => {
            return Err(vec![Issue::error(
                IssueType::NotSupported,
                format!("unknown resource type '{t}'"),
            )]);
        }
        None => {
            // `_type` first: it decides which parameters the other ones may name.
            for (name, value) in params.iter().filter(|(n, _)| n == "_type") {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if r4().is_resource_type(t) {
                        if !q.types.iter().any(|x| x == t) {
                            q.types.push(t.to_string());
                        }
                    } else {
                        fail(
                            invalid(name, format!("unknown resource type '{t}' in _type")),
                            &mut q.warnings,
                        );
                    }
                }
            }
            q.types.clone()
        }
    };
    for (name, value) in params {
        let result = parse_one(reg, &mut q, &context, name, value);
        match result {
            Ok(true) => q.used.push((name.clone(), value.clone())),
            Ok(false) => {}
            Err(f) => fail(f, &mut q.warnings),
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

/// Parse one parameter into `q`. `Ok(false)` when it was accepted but has no effect.
fn parse_one(
    reg: &Registry,
    q: &mut SearchQuery,
    context: &[String],
    name: &str,
    value: &str,
) -> Result<bool, Fail> {
    let (base, modifier) = match name.split_once(':') {
        Some((b, m)) => (b, Some(m)),
        None => (name, None),
    };
    let control_no_modifier = |what: &str| -> Result<(), Fail> {
        match modifier {
            Some(m) => Err(not_supported(
                name,
                format!("modifier ':{m}' is not allowed on {what}"),
            )),
            None => Ok(()),
        }
    };
    match base {
        "_type" => {
            control_no_modifier("_type")?;
            if q.resource_type.is_some() {
                return Err(unknown(
                    name,
                    "_type is only meaningful in a system-level search",
                ));
            }
            Ok(true)
        }
        "_count" | "_offset" => {
            control_no_modifier(base)?;
            let n: usize = value.trim().parse().map_err(|_| {
                invalid(
                    name,
                    format!("{base} must be a non-negative integer, got '{value}'"),
                )
            })?;
            if base == "_count" {
                q.count = Some(n);
            } else {
                q.offset = n;
            }
            Ok(true)
        }
        "_total" => {
            control_no_modifier(base)?;
            q.total = match value {
                "none" => TotalMode::None,
                "estimate" => TotalMode::Estimate,
                "accurate" => TotalMode::Accurate,
                _ => {
                    return Err(invalid(
                        name,
                        format!("_total must be none, estimate or accurate, got '{value}'"),
                    ));
                }
            };
            Ok(true)
        }
        "_summary" => {
            control_no_modifier(base)?;
            q.summary = Some(match value {
                "true" => Summary::True,
                "text" => Summary::Text,
                "data" => Summary::Data,
                "count" => Summary::Count,
                "false" => Summary::False,
                _ => {
                    return Err(invalid(
                        name,
                        format!("_summary must be true, text, data, count or false, got '{value}'"),
                    ));
                }
            });
            Ok(true)
        }
        "_elements" => {
            control_no_modifier(base)?;
            for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if !q.elements.iter().any(|x| x == e) {
                    q.elements.push(e.to_string());
                }
            }
            Ok(true)
        }
        "_sort" => {
            control_no_modifier(base)?;
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (code, descending) = match part.strip_prefix('-') {
                    Some(c) => (c, true),
                    None => (part, false),
                };
                let by = match code {
                    "_id" => SortBy::Id,
                    "_lastUpdated" => SortBy::LastUpdated,
                    _ => {
                        let params = resolve(reg, context, code).map_err(|m| unknown(name, m))?;
                        let kind = params[0].kind;
                        if matches!(kind, ParamKind::Composite | ParamKind::Special)
                            || special_values(params[0]).is_some()
                        {
                            return Err(not_supported(
                                name,
                                format!("cannot sort by {} parameter '{code}'", kind.code()),
                            ));
                        }
                        SortBy::Index {
                            kind,
                            keys: keys_of(&params),
                        }
                    }
                };
                q.sort.push(SortKey {
                    code: code.to_string(),
                    descending,
                    by,
                });
            }
            Ok(true)
        }
        "_include" | "_revinclude" => {
            let iterate = match modifier {
                None => false,
                Some("iterate" | "recurse") => true,
                Some(m) => {
                    return Err(not_supported(
                        name,
                        format!("unknown modifier ':{m}' on {base} (use :iterate)"),
                    ));
                }
            };
            let inc = parse_include(reg, name, value, iterate)?;
            if base == "_include" {
                q.include.push(inc);
            } else {
                q.revinclude.push(inc);
            }
            Ok(true)
        }
        _ if TRANSPORT.contains(&base) => Ok(false),
        _ => {
            if value.is_empty() {
                q.warnings.push(
                    Issue::warning(
                        IssueType::Invalid,
                        format!("parameter '{name}' has an empty value (ignored)"),
                    )
                    .at(name),
                );
                return Ok(false);
            }
            let test = parse_filter(reg, context, name, value, 0)?;
            if let Test::Values {
                kind: ParamKind::Token,
                ..
            } = &test
                && (name.ends_with(":above") || name.ends_with(":below"))
            {
                q.warnings.push(
                    Issue::warning(
                        IssueType::Informational,
                        format!(
                            "'{name}': no terminology service, so only the code itself matched"
                        ),
                    )
                    .at(name),
                );
            }
            q.filters.push(Filter {
                name: name.to_string(),
                test,
            });
            Ok(true)
        }
    }
}

fn parse_include(reg: &Registry, name: &str, value: &str, iterate: bool) -> Result<Include, Fail> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(invalid(
            name,
            format!("'{value}' is not SourceType:parameter[:TargetType]"),
        ));
    }
    let source = parts[0];
    if !r4().is_resource_type(source) {
        return Err(invalid(name, format!("unknown resource type '{source}'")));
    }
    let target_type = parts.get(2).map(|t| t.to_string());
    if let Some(t) = &target_type
        && !r4().is_resource_type(t)
    {
        return Err(invalid(name, format!("unknown resource type '{t}'")));
    }
    let code = parts[1];
    let keys = if code == "*" {
        reg.params_for(source)
            .filter(|p| p.kind == ParamKind::Reference && p.is_supported() && !p.pending)
            .flat_map(|p| p.search_keys.iter().cloned())
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .collect()
    } else {
        match reg.param(source, code) {
            Some(p) if p.pending => {
                return Err(not_supported(
                    name,
                    format!("{source}:{code} is still being indexed"),
                ));
            }
            Some(p) if p.kind == ParamKind::Reference && p.is_supported() => {
                if let Some(t) = &target_type
                    && !p.targets.is_empty()
                    && !p.targets.contains(t)
                {
                    return Err(invalid(
                        name,
                        format!("'{t}' is not a target type of {source}:{code}"),
                    ));
                }
                p.search_keys.clone()
            }
            Some(_) => {
                return Err(invalid(
                    name,
                    format!("{source}:{code} is not a reference parameter"),
                ));
            }
            None => {
                return Err(invalid(
                    name,
                    format!("unknown search parameter '{code}' for {source}"),
                ));
            }
        }
    };
    Ok(Include {
        source_type: source.to_string(),
        code: code.to_string(),
        target_type,
        iterate,
        keys,
    })
}

/// The parameters named `code` in the given types (the common ones when `context` is empty).
fn resolve<'r>(
    reg: &'r Registry,
    context: &[String],
    code: &str,
) -> Result<Vec<&'r SearchParam>, String> {
    let found: Vec<&SearchParam> = if context.is_empty() {
        reg.param("Resource", code).into_iter().collect()
    } else {
        let mut v = Vec::new();
        for t in context {
            match reg.param(t, code) {
                Some(p) => v.push(p),
                None => {
                    return Err(format!("unknown search parameter '{code}' for {t}"));
                }
            }
        }
        v
    };
    let Some(first) = found.first() else {
        return Err(format!(
            "unknown search parameter '{code}' for a search across all types (use _type)"
        ));
    };
    if let Some(p) = found.iter().find(|p| !p.is_supported()) {
        return Err(format!(
            "search parameter '{code}' is not supported: {}",
            p.unsupported_reason().unwrap_or("")
        ));
    }
    if found.iter().any(|p| p.pending) {
        return Err(format!(
            "search parameter '{code}' was defined recently and is still being indexed \
             (progress: GET [base]/$reindex); it can be used when indexing finishes"
        ));
    }
    if found.iter().any(|p| p.kind != first.kind) {
        return Err(format!(
            "search parameter '{code}' has different types in the searched types"
        ));
    }
    Ok(found)
}

fn keys_of(params: &[&SearchParam]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for p in params {
        for k in &p.search_keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// The search modifiers of R4 (besides resource type names on references).
const MODIFIERS: [&str; 11] = [
    "missing",
    "exact",
    "contains",
    "text",
    "not",
    "above",
    "below",
    "in",
    "not-in",
    "of-type",
    "identifier",
];

fn modifier_allowed(kind: ParamKind, m: &str) -> bool {
    m == "missing"
        || match kind {
            ParamKind::String => matches!(m, "exact" | "contains"),
            ParamKind::Token => matches!(
                m,
                "text" | "not" | "above" | "below" | "in" | "not-in" | "of-type"
            ),
            ParamKind::Reference => matches!(m, "identifier" | "above" | "below"),
            ParamKind::Uri => matches!(m, "above" | "below"),
            _ => false,
        }
}

const MAX_DEPTH: usize = 4;

/// Parse a (possibly chained or `_has`) filter in the context of `context` types.
fn parse_filter(
    reg: &Registry,
    context: &[String],
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Test, Fail> {
    if depth > MAX_DEPTH {
        return Err(invalid(name, "chain or _has nested too deeply"));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(reg, context, name, rest, value, depth);
    }
    let (head, chain) = match name.split_once('.') {
        Some((h, c)) => (h, Some(c)),
        None => (name, None),
    };
    let (code, modifier) = match head.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (head, None),
    };
    let fail_unknown = |m: String| {
        if depth == 0 {
            unknown(name, m)
        } else {
            invalid(name, format!("broken chain: {m}"))
        }
    };
    match code {
        "_id" => {
            let negate = match modifier {
                None => false,
                Some("not") => true,
                Some(m) => {
                    return Err(not_supported(
                        name,
                        format!("modifier ':{m}' is not supported on _id"),
                    ));
                }
            };
            if chain.is_some() {
                return Err(invalid(name, "_id cannot be chained"));
            }
            let ids = split_escaped(value, ',')
                .iter()
                .map(|v| unescape(v))
                .collect();
            return Ok(Test::Id { ids, negate });
        }
        "_lastUpdated" => {
            if let Some(m) = modifier {
                return Err(not_supported(
                    name,
                    format!("modifier ':{m}' is not supported on _lastUpdated"),
                ));
            }
            if chain.is_some() {
                return Err(invalid(name, "_lastUpdated cannot be chained"));
            }
            let mut matches = Vec::new();
            for v in split_escaped(value, ',') {
                matches.push(parse_date(name, &v)?);
            }
            return Ok(Test::LastUpdated(matches));
        }
        _ => {}
    }
    let params = resolve(reg, context, code).map_err(fail_unknown)?;
    let kind = params[0].kind;
    let keys = keys_of(&params);
    let components = params[0].components.clone();
    if let Some(chain) = chain {
        if kind != ParamKind::Reference {
            return Err(invalid(
                name,
                format!(
                    "cannot chain through '{code}': it is a {} parameter, not a reference",
                    kind.code()
                ),
            ));
        }
        let mut targets: Vec<String> = Vec::new();
        for p in &params {
            for t in &p.targets {
                if !targets.contains(t) {
                    targets.push(t.clone());
                }
            }
        }
        if let Some(m) = modifier {
            if !r4().is_resource_type(m) {
                return Err(invalid(
                    name,
                    format!("':{m}' is not a resource type to chain through"),
                ));
            }
            if !targets.is_empty() && !targets.iter().any(|t| t == m) {
                return Err(invalid(
                    name,
                    format!("'{m}' is not a target type of '{code}'"),
                ));
            }
            targets = vec![m.to_string()];
        }
        let inner_code = chain.split(['.', ':']).next().unwrap_or(chain);
        // Keep the targets that define the chained parameter (with one type).
        let mut defining: Vec<String> = targets
            .iter()
            .filter(|t| {
                inner_code == "_id"
                    || inner_code == "_lastUpdated"
                    || inner_code.starts_with("_has")
                    || reg.param(t, inner_code).is_some_and(|p| p.is_supported())
            })
            .cloned()
            .collect();
        if let Some(k) = defining
            .first()
            .and_then(|t| reg.param(t, inner_code))
            .map(|p| p.kind)
        {
            defining.retain(|t| reg.param(t, inner_code).is_some_and(|p| p.kind == k));
        }
        if defining.is_empty() {
            return Err(invalid(
                name,
                format!(
                    "broken chain: no target type of '{code}' has a search parameter '{inner_code}'"
                ),
            ));
        }
        let inner = parse_filter(reg, &defining, chain, value, depth + 1).map_err(|f| match f {
            Fail::Unknown(i) => Fail::Invalid(i),
            other => other,
        })?;
        return Ok(Test::Chain {
            keys,
            target_types: defining,
            inner: Box::new(inner),
        });
    }
    if let Some(special) = special_values(params[0]) {
        return parse_special(special, &keys, name, code, modifier, value);
    }
    let mut type_modifier = None;
    if let Some(m) = modifier {
        if kind == ParamKind::Reference && r4().is_resource_type(m) {
            let allowed = params
                .iter()
                .all(|p| p.targets.is_empty() || p.targets.iter().any(|t| t == m));
            if !allowed {
                return Err(invalid(
                    name,
                    format!("'{m}' is not a target type of '{code}'"),
                ));
            }
            type_modifier = Some(m.to_string());
        } else if !MODIFIERS.contains(&m) {
            return Err(not_supported(
                name,
                format!("unknown modifier ':{m}' on '{code}'"),
            ));
        } else if !modifier_allowed(kind, m) {
            return Err(invalid(
                name,
                format!(
                    "modifier ':{m}' is not allowed on {} parameter '{code}'",
                    kind.code()
                ),
            ));
        }
    }
    let modifier = if type_modifier.is_some() {
        None
    } else {
        modifier
    };
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(invalid(
                    name,
                    format!(":missing takes true or false, got '{value}'"),
                ));
            }
        };
        return Ok(Test::Missing {
            keys,
            kind,
            missing,
        });
    }
    if kind == ParamKind::Token && matches!(modifier, Some("in" | "not-in")) {
        let mut matches = Vec::new();
        for v in split_escaped(value, ',') {
            let v = unescape(&v);
            let ok = v.contains(':') || v.starts_with("ValueSet/");
            if !ok {
                return Err(invalid(
                    name,
                    format!("'{v}' is not a value set (a canonical URL or ValueSet/id)"),
                ));
            }
            matches.push(Match::ValueSet(v));
        }
        return Ok(Test::Values {
            keys,
            kind,
            components,
            matches,
            negate: modifier == Some("not-in"),
        });
    }
    if kind == ParamKind::Token && matches!(modifier, Some("above" | "below")) {
        let mut matches = Vec::new();
        for v in split_escaped(value, ',') {
            let parts = split_escaped(&v, '|');
            let (system, code) = match parts.as_slice() {
                [c] if !c.is_empty() => (None, unescape(c)),
                [sys, c] if !sys.is_empty() && !c.is_empty() => (Some(unescape(sys)), unescape(c)),
                _ => {
                    return Err(invalid(
                        name,
                        format!(
                            "'{v}' is not [system|]code (both needed for :{})",
                            modifier.unwrap_or("")
                        ),
                    ));
                }
            };
            matches.push(Match::Subsumption {
                system,
                code,
                above: modifier == Some("above"),
            });
        }
        return Ok(Test::Values {
            keys,
            kind,
            components,
            matches,
            negate: false,
        });
    }
    if kind == ParamKind::Reference && matches!(modifier, Some("above" | "below")) {
        // URL hierarchies of absolute and canonical references, as for uri parameters.
        let mode = if modifier == Some("above") {
            UriMode::Above
        } else {
            UriMode::Below
        };
        let mut matches = Vec::new();
        for v in split_escaped(value, ',') {
            let v = unescape(&v);
            let url = v.split('|').next().unwrap_or(&v).to_string();
            if !(url.contains("://") || url.starts_with("urn:")) {
                return Err(invalid(
                    name,
                    format!(
                        ":{} on a reference needs an absolute or canonical URL, not '{v}'",
                        modifier.unwrap_or("")
                    ),
                ));
            }
            matches.push(Match::ReferenceUrlHierarchy { mode, url });
        }
        return Ok(Test::Values {
            keys,
            kind,
            components,
            matches,
            negate: false,
        });
    }
    let mut matches = Vec::new();
    for v in split_escaped(value, ',') {
        if v.is_empty() {
            return Err(invalid(name, format!("empty value in '{value}'")));
        }
        let m = match kind {
            ParamKind::Composite => {
                let parts = split_escaped(&v, '$');
                if parts.len() != components.len() {
                    return Err(invalid(
                        name,
                        format!(
                            "'{v}' must have {} parts separated by '$'",
                            components.len()
                        ),
                    ));
                }
                let mut ms = Vec::new();
                for (part, k) in parts.iter().zip(&components) {
                    ms.push(parse_value(name, *k, None, None, part)?);
                }
                Match::Composite(ms)
            }
            _ => parse_value(name, kind, modifier, type_modifier.as_deref(), &v)?,
        };
        matches.push(m);
    }
    Ok(Test::Values {
        keys,
        kind,
        components,
        matches,
        negate: modifier == Some("not"),
    })
}

fn parse_has(
    reg: &Registry,
    context: &[String],
    name: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Test, Fail> {
    let mut it = rest.splitn(3, ':');
    let (Some(source), Some(ref_code), Some(inner_name)) = (it.next(), it.next(), it.next()) else {
        return Err(invalid(name, "_has must be _has:Type:reference:parameter"));
    };
    if !r4().is_resource_type(source) {
        return Err(invalid(
            name,
            format!("unknown resource type '{source}' in _has"),
        ));
    }
    let p = match reg.param(source, ref_code) {
        Some(p) if p.kind == ParamKind::Reference && p.is_supported() => p,
        Some(_) => {
            return Err(invalid(
                name,
                format!("{source}:{ref_code} is not a reference parameter"),
            ));
        }
        None => {
            return Err(invalid(
                name,
                format!("unknown search parameter '{ref_code}' for {source}"),
            ));
        }
    };
    if !p.targets.is_empty()
        && !context.is_empty()
        && !context.iter().all(|t| p.targets.contains(t))
    {
        return Err(invalid(
            name,
            format!("{source}:{ref_code} cannot refer to {}", context.join(",")),
        ));
    }
    let inner = parse_filter(reg, &[source.to_string()], inner_name, value, depth + 1).map_err(
        |f| match f {
            Fail::Unknown(i) => Fail::Invalid(i),
            other => other,
        },
    )?;
    Ok(Test::Has {
        source_type: source.to_string(),
        keys: p.search_keys.clone(),
        inner: Box::new(inner),
    })
}

/// Split a leading comparison prefix off a date, number or quantity value.
fn split_prefix<'v>(name: &str, v: &'v str) -> Result<(Prefix, &'v str), Fail> {
    let b = v.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
        let p = Prefix::from_code(&v[..2]).ok_or_else(|| {
            invalid(
                name,
                format!(
                    "unknown prefix '{}' in '{v}' (use eq, ne, gt, lt, ge, le, sa, eb or ap)",
                    &v[..2]
                ),
            )
        })?;
        Ok((p, &v[2..]))
    } else {
        Ok((Prefix::Eq, v))
    }
}

fn parse_date(name: &str, v: &str) -> Result<Match, Fail> {
    let (prefix, rest) = split_prefix(name, v)?;
    let r = parse_date_range(rest)
        .ok_or_else(|| invalid(name, format!("bad date '{rest}' for parameter {name}")))?;
    Ok(Match::Date {
        prefix,
        lo: r.lo,
        hi: r.hi,
    })
}

fn parse_number(name: &str, v: &str) -> Result<(Prefix, Decimal), Fail> {
    let (prefix, rest) = split_prefix(name, v)?;
    if let Err(why) = issho_model::decimal::check_indexable(rest) {
        return Err(invalid(name, format!("parameter {name}: {why}")));
    }
    let d = parse_decimal(rest)
        .ok_or_else(|| invalid(name, format!("bad number '{rest}' for parameter {name}")))?;
    Ok((prefix, d))
}

/// Parse one (OR-part of a) value of a parameter of `kind`.
fn parse_value(
    name: &str,
    kind: ParamKind,
    modifier: Option<&str>,
    type_modifier: Option<&str>,
    v: &str,
) -> Result<Match, Fail> {
    let opt = |s: &str| {
        if s.is_empty() {
            None
        } else {
            Some(unescape(s))
        }
    };
    match kind {
        ParamKind::Token => {
            if modifier == Some("text") {
                let t = normalize(&unescape(v));
                if t.is_empty() {
                    return Err(invalid(name, "empty :text value"));
                }
                return Ok(Match::TokenText(t));
            }
            let parts = split_escaped(v, '|');
            if modifier == Some("of-type") {
                if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                    return Err(invalid(
                        name,
                        format!(":of-type needs system|code|value, got '{v}'"),
                    ));
                }
                return Ok(Match::OfType {
                    system: unescape(&parts[0]),
                    code: unescape(&parts[1]),
                    value: unescape(&parts[2]),
                });
            }
            match parts.as_slice() {
                [code] => Ok(Match::Token {
                    system: None,
                    code: Some(unescape(code)),
                }),
                [system, code] if !(system.is_empty() && code.is_empty()) => Ok(Match::Token {
                    system: Some(unescape(system)),
                    code: opt(code),
                }),
                _ => Err(invalid(name, format!("'{v}' is not [system|]code"))),
            }
        }
        ParamKind::String => {
            let raw = unescape(v);
            let (mode, value) = match modifier {
                Some("exact") => (StringMode::Exact, raw),
                Some("contains") => (StringMode::Contains, normalize(&raw)),
                _ => (StringMode::StartsWith, normalize(&raw)),
            };
            if value.is_empty() {
                return Err(invalid(name, format!("'{v}' has no searchable text")));
            }
            Ok(Match::String { mode, value })
        }
        ParamKind::Reference => {
            if modifier == Some("identifier") {
                let parts = split_escaped(v, '|');
                return match parts.as_slice() {
                    [value] => Ok(Match::ReferenceIdentifier {
                        system: None,
                        value: unescape(value),
                    }),
                    [system, value] if !value.is_empty() => Ok(Match::ReferenceIdentifier {
                        system: Some(unescape(system)),
                        value: unescape(value),
                    }),
                    _ => Err(invalid(name, format!("'{v}' is not [system|]value"))),
                };
            }
            let v = unescape(v);
            if v.contains("://") || v.starts_with("urn:") {
                let (url, version) = match v.split_once('|') {
                    Some((u, ver)) => (u.to_string(), Some(ver.to_string())),
                    None => (v.clone(), None),
                };
                return Ok(Match::ReferenceUrl { url, version });
            }
            if v.contains('/') {
                let (t, id, version) = parse_literal_reference(&v)
                    .ok_or_else(|| invalid(name, format!("'{v}' is not a reference (Type/id)")))?;
                if let Some(m) = type_modifier
                    && m != t
                {
                    return Err(invalid(
                        name,
                        format!("'{v}' contradicts the type modifier ':{m}'"),
                    ));
                }
                return Ok(Match::Reference {
                    ref_type: Some(t),
                    id,
                    version,
                });
            }
            Ok(Match::Reference {
                ref_type: type_modifier.map(str::to_string),
                id: v,
                version: None,
            })
        }
        ParamKind::Date => parse_date(name, v),
        ParamKind::Number => {
            let (prefix, value) = parse_number(name, v)?;
            Ok(Match::Number { prefix, value })
        }
        ParamKind::Quantity => {
            let parts = split_escaped(v, '|');
            let (num, system, code) = match parts.as_slice() {
                [n] => (n.as_str(), None, None),
                [n, s, c] => (n.as_str(), opt(s), opt(c)),
                _ => {
                    return Err(invalid(
                        name,
                        format!("'{v}' is not [prefix]number[|system|code]"),
                    ));
                }
            };
            let (prefix, value) = parse_number(name, num)?;
            if system.as_deref() == Some(UCUM)
                && let Some(c) = &code
            {
                let (canon, f) = ucum_canonical(c);
                return Ok(Match::Quantity {
                    prefix,
                    value: Decimal {
                        value: value.value * f,
                        lo: value.lo * f,
                        hi: value.hi * f,
                    },
                    system,
                    code: Some(canon),
                    canonical: true,
                });
            }
            Ok(Match::Quantity {
                prefix,
                value,
                system,
                code,
                canonical: false,
            })
        }
        ParamKind::Uri => Ok(Match::Uri {
            mode: match modifier {
                Some("above") => UriMode::Above,
                Some("below") => UriMode::Below,
                _ => UriMode::Exact,
            },
            value: unescape(v),
        }),
        ParamKind::Composite | ParamKind::Special => Err(not_supported(
            name,
            format!("nested {} parameter", kind.code()),
        )),
    }
}

/// Parameters whose values have a syntax of their own.
#[derive(Clone, Copy)]
enum Special {
    FullText(TextField),
    Near,
}

fn special_values(p: &SearchParam) -> Option<Special> {
    match p.source {
        Source::Narrative => Some(Special::FullText(TextField::Narrative)),
        Source::Content => Some(Special::FullText(TextField::Content)),
        Source::Position(_) => Some(Special::Near),
        _ => None,
    }
}

/// `_text`, `_content` (full text) and `near`: values ORed by commas, no modifiers.
fn parse_special(
    special: Special,
    keys: &[String],
    name: &str,
    code: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<Test, Fail> {
    if let Some(m) = modifier {
        return Err(not_supported(
            name,
            format!("modifier ':{m}' is not supported on '{code}'"),
        ));
    }
    let values = split_escaped(value, ',');
    match special {
        Special::FullText(field) => {
            let values: Vec<String> = values.iter().map(|v| unescape(v)).collect();
            let query = fts_query(&values).map_err(|e| invalid(name, e))?;
            Ok(Test::FullText { field, query })
        }
        Special::Near => {
            let mut matches = Vec::new();
            for v in &values {
                let (lat, lon, distance_m) =
                    crate::geo::parse_near(v).map_err(|e| invalid(name, e))?;
                matches.push(Match::Near {
                    lat,
                    lon,
                    distance_m,
                });
            }
            Ok(Test::Values {
                keys: keys.to_vec(),
                kind: ParamKind::Special,
                components: Vec::new(),
                matches,
                negate: false,
            })
        }
    }
}
