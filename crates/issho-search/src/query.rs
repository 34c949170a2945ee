//! A parsed search request ([`SearchQuery`]: filters as [`Test`]s of [`Match`]es, sorting,
//! includes, result controls); the parser is in `query/parse.rs`.

use crate::fulltext::{Phrase, TextField};
use crate::registry::ParamKind;
use crate::values::{Decimal, Micros};
use issho_model::Issue;

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
    /// A composite's values are tuples of its `components`' rows: for each of `keys`, `parts`
    /// names the keys of those rows, in order (its own `key$0`, `key$1`…, or other
    /// parameters' keys); empty for other kinds.
    Values {
        keys: Vec<String>,
        kind: ParamKind,
        components: Vec<ParamKind>,
        parts: Vec<Vec<String>>,
        matches: Vec<Match>,
        negate: bool,
    },
    /// `:missing=true|false` (`components` and `parts` as for `Values`).
    Missing {
        keys: Vec<String>,
        kind: ParamKind,
        components: Vec<ParamKind>,
        parts: Vec<Vec<String>>,
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
    /// `_text` / `_content`: one of the alternatives (each a list of phrases, all of which
    /// occur) matches the narrative or the content (issho's own tokens, see `fulltext`).
    FullText {
        field: TextField,
        terms: Vec<Vec<Phrase>>,
    },
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
    pub by: SortBy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortBy {
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
    /// The index keys of the reference parameters this rule follows.
    pub keys: Vec<String>,
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

mod parse;
pub use parse::{parse, parse_in};
