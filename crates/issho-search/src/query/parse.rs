//! The parser: URL-decoded name/value pairs → [`SearchQuery`] (parameters resolved in the
//! registry, modifiers, prefixes, chains, `_has`, includes, result controls).

use super::*;
use crate::expr::parse_literal_reference;
use crate::extract::UCUM;
use crate::fulltext::{TextField, text_terms};
use crate::registry::{ParamKind, Registry, SearchParam, Source};
use crate::values::{
    Decimal, normalize, parse_date_range, parse_decimal, split_escaped, ucum_canonical, unescape,
};
use issho_model::{Issue, IssueType, r4};

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
    keys_and_parts(params).0
}

/// The keys the parameters' rows are under (each once, in order), and for each the keys of
/// its composite components' rows.
fn keys_and_parts(params: &[&SearchParam]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut keys: Vec<String> = Vec::new();
    let mut parts = Vec::new();
    for p in params {
        for (k, ps) in p.search_keys.iter().zip(&p.search_parts) {
            if !keys.contains(k) {
                keys.push(k.clone());
                parts.push(ps.clone());
            }
        }
    }
    (keys, parts)
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
    let (keys, parts) = keys_and_parts(&params);
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
            components,
            parts,
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
            parts,
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
            parts,
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
            parts,
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
        parts,
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

mod include;
mod value;
use include::*;
use value::*;
