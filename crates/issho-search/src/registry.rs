//! The search parameters of R4, compiled once: by (resource type, code).

use crate::expr::{self, Path};
use crate::extract::{IDENTIFIER_SUFFIX, OF_TYPE_SUFFIX, TEXT_SUFFIX};
use issho_model::{SearchParamDef, r4};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

mod aliases;
use aliases::find_aliases;

/// The type of a search parameter (`SearchParameter.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamKind {
    pub fn from_code(code: &str) -> Option<ParamKind> {
        Some(match code {
            "number" => ParamKind::Number,
            "date" => ParamKind::Date,
            "string" => ParamKind::String,
            "token" => ParamKind::Token,
            "reference" => ParamKind::Reference,
            "composite" => ParamKind::Composite,
            "quantity" => ParamKind::Quantity,
            "uri" => ParamKind::Uri,
            "special" => ParamKind::Special,
            _ => return None,
        })
    }
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::Number => "number",
            ParamKind::Date => "date",
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::Composite => "composite",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
            ParamKind::Special => "special",
        }
    }
}

/// How a parameter's values are found in a resource.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// Compiled paths from the resource root.
    Paths(Vec<Path>),
    /// An expression the path compiler does not handle, evaluated by the FHIRPath engine
    /// (slower; used for custom parameters such as JP Core's `jp-kana-sort`).
    FhirPath(Arc<issho_fhirpath::Expr>),
    /// Composite: root paths, and for each root the components' paths relative to it.
    Composite(Vec<(Path, Vec<Vec<Path>>)>),
    /// `_id`: the `resources.id` column.
    Id,
    /// `_lastUpdated`: the `resources.last_updated` column.
    LastUpdated,
    /// `Patient.deceased.exists() and Patient.deceased != false`: a computed boolean token.
    Deceased,
    /// `_text`: full-text search of the narrative (`sp_text`, see `fulltext`).
    Narrative,
    /// `_content`: full-text search of all the text of the resource.
    Content,
    /// `near`: positions (`latitude`, `longitude`) at these paths (`sp_geo`, see `geo`).
    Position(Vec<Path>),
    /// Not searchable here (`_query`, or a compile failure).
    Unsupported(String),
}

/// One search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    /// The parameter name used in URLs: `code`, `patient`, `_tag`.
    pub code: String,
    /// Canonical URL of the definition.
    pub url: String,
    pub kind: ParamKind,
    /// The resource type this entry is for (`Resource` for the parameters of every type).
    pub resource_type: String,
    /// Target resource types of a reference parameter.
    pub targets: Vec<String>,
    pub expression: Option<String>,
    /// For composites: the kinds of the components, in order.
    pub components: Vec<ParamKind>,
    /// Key of this parameter's rows in the index tables: `Observation.code`, or the bare code
    /// for the parameters common to all resources (`_tag`).
    pub(crate) key: String,
    pub(crate) source: Source,
    /// Numbers of this parameter's index keys in [`Registry::keys`].
    pub(crate) kid: KeyIds,
    /// The keys whose rows a search reads: `[key]`, or, for a parameter whose paths are
    /// exactly those of other parameters of the type (`Observation.combo-code` =
    /// `Observation.code | Observation.component.code`), their keys; such a parameter has no
    /// rows of its own.
    pub(crate) search_keys: Vec<String>,
    /// For each of `search_keys`, the keys of its composite components' rows (empty lists
    /// for other kinds): `key$0`, `key$1`…, or other parameters' keys (see `composite`).
    pub(crate) search_parts: Vec<Vec<String>>,
    /// A composite whose components are other parameters' rows: it has none of its own.
    pub(crate) shares_parts: bool,
    /// Defined by a SearchParameter resource of this deployment (not by the specification).
    pub custom: bool,
    /// A custom parameter whose index rows are still being built for the resources stored
    /// before it was defined: indexed on every write, but not yet searchable.
    pub pending: bool,
}

/// The index keys of one parameter, as numbers into [`Registry::keys`] (`u32::MAX`: none).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyIds {
    /// The parameter's own rows (`Observation.code`).
    pub base: u32,
    /// Token display/text rows for `:text` (`…#text`).
    pub text: u32,
    /// Identifier.type rows for `:of-type` (`…#type`).
    pub of_type: u32,
    /// Reference.identifier rows for `:identifier` (`…#identifier`).
    pub identifier: u32,
    /// Composite components (`…$0`, `…$1`).
    pub comps: Vec<u32>,
}

/// No key.
pub(crate) const NO_KEY: u32 = u32::MAX;

impl SearchParam {
    /// False when the parameter is defined but issho cannot evaluate it (reported in the
    /// CapabilityStatement as absent; a search using it is refused as not supported).
    pub fn is_supported(&self) -> bool {
        !matches!(self.source, Source::Unsupported(_))
    }
    /// False for a parameter searched through the rows of others (see `search_keys`).
    pub(crate) fn is_indexed(&self) -> bool {
        self.search_keys.len() == 1 && self.search_keys[0] == self.key
    }
    /// Why the parameter is not supported, if it is not.
    pub fn unsupported_reason(&self) -> Option<&str> {
        match &self.source {
            Source::Unsupported(r) => Some(r),
            _ => None,
        }
    }
}

/// The search parameters of a deployment by (resource type, code): all of R4, plus the
/// custom ones defined by its active SearchParameter resources.
#[derive(Clone)]
pub struct Registry {
    pub(crate) by_type: HashMap<String, Vec<SearchParam>>,
    /// Every key index rows can carry, in a fixed order (numbered by position).
    keys: Vec<String>,
    /// Per definition URL: compile errors (empty when every base compiled).
    compile_errors: Vec<(String, String)>,
    definitions: usize,
}

const RESOURCE: &str = "Resource";

impl Registry {
    /// The registry of the R4 specification's parameters, built on first use.
    pub fn r4() -> &'static Registry {
        Self::r4_shared()
    }

    /// [`Registry::r4`] as a shared handle (the starting point of every deployment).
    pub fn r4_shared() -> &'static Arc<Registry> {
        static REG: OnceLock<Arc<Registry>> = OnceLock::new();
        REG.get_or_init(|| Arc::new(Registry::build(&[]).0))
    }

    /// The R4 parameters plus `custom` definitions (from active SearchParameter resources).
    /// Definitions that cannot be used are left out and returned with the reason: unknown
    /// type, a base that is not a resource type, an expression that does not compile, a
    /// code taken by a parameter of the specification. Custom parameters whose index keys
    /// are in `pending` are marked [`SearchParam::pending`].
    pub fn with_custom(custom: &[SearchParamDef]) -> (Registry, Vec<(String, String)>) {
        let mut rejected = Vec::new();
        let mut ok: Vec<SearchParamDef> = Vec::new();
        for def in custom {
            match check_custom(def, &ok) {
                Ok(()) => ok.push(def.clone()),
                Err(e) => rejected.push((def.url.clone(), e)),
            }
        }
        let (reg, errors) = Registry::build(&ok);
        rejected.extend(errors);
        (reg, rejected)
    }

    /// Mark the custom parameters with an index key in `pending` as pending (rows still being
    /// built), and the others as ready.
    pub fn set_pending(&mut self, pending: &HashSet<String>) {
        let keys = self.keys.clone();
        for p in self.by_type.values_mut().flatten().filter(|p| p.custom) {
            let k = &p.kid;
            p.pending = [k.base, k.text, k.of_type, k.identifier]
                .into_iter()
                .chain(k.comps.iter().copied())
                .filter(|&n| n != NO_KEY)
                .any(|n| pending.contains(&keys[n as usize]));
        }
    }

    /// Why `def` could not be a custom parameter next to the specification's and `others`
    /// (`None`: it can).
    pub fn check_custom_definition(def: &SearchParamDef) -> Option<String> {
        check_custom(def, &[]).err()
    }

    /// The custom parameters, one per (resource type, code).
    pub fn custom_params(&self) -> impl Iterator<Item = &SearchParam> {
        self.by_type.values().flatten().filter(|p| p.custom)
    }

    /// Every index key of the custom parameters (its own rows and the auxiliary ones).
    pub fn custom_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.custom_params() {
            out.extend(p.index_keys(self));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Resource types that have a pending custom parameter (whose rows are being built).
    pub fn pending_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .by_type
            .iter()
            .filter(|(_, ps)| ps.iter().any(|p| p.pending))
            .map(|(t, _)| t.clone())
            .collect();
        types.sort();
        types
    }

    /// The parameter `code` of `resource_type`, including the ones every resource has
    /// (`_id`, `_lastUpdated`, `_tag`…). `resource_type` `Resource` finds only those.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        let find = |t: &str| {
            self.by_type
                .get(t)
                .and_then(|v| v.iter().find(|p| p.code == code))
        };
        find(resource_type).or_else(|| {
            if resource_type == RESOURCE || r4().is_resource_type(resource_type) {
                find(RESOURCE)
            } else {
                None
            }
        })
    }

    /// Every parameter of `resource_type`: its own, then the common ones.
    pub fn params_for(&self, resource_type: &str) -> impl Iterator<Item = &SearchParam> {
        let own = if resource_type == RESOURCE {
            None
        } else {
            self.by_type.get(resource_type)
        };
        let common = if resource_type == RESOURCE || r4().is_resource_type(resource_type) {
            self.by_type.get(RESOURCE)
        } else {
            None
        };
        own.into_iter()
            .flatten()
            .chain(common.into_iter().flatten())
    }

    /// Number of SearchParameter definitions read.
    pub fn definition_count(&self) -> usize {
        self.definitions
    }

    /// Every key index rows can carry (`Observation.code`, `Observation.code#text`,
    /// `Observation.code-value-quantity$0`…); extraction numbers keys by position here.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// True when a specification parameter has this canonical URL.
    fn definitions_by_url(&self, url: &str) -> bool {
        r4().search_parameters().iter().any(|d| d.url == url)
    }

    /// Definitions (URL, reason) whose expression could not be compiled to a path walker.
    pub fn compile_errors(&self) -> &[(String, String)] {
        &self.compile_errors
    }

    /// Compile the specification's definitions, then `custom` ones (already checked by
    /// [`check_custom`]); returns the registry and the custom definitions that failed.
    fn build(custom: &[SearchParamDef]) -> (Registry, Vec<(String, String)>) {
        let spec = r4().search_parameters();
        let by_url: HashMap<&str, &SearchParamDef> = spec
            .iter()
            .chain(custom)
            .map(|d| (d.url.as_str(), d))
            .collect();
        let mut by_type: HashMap<String, Vec<SearchParam>> = HashMap::new();
        let mut compile_errors = Vec::new();
        let mut custom_errors = Vec::new();
        let n_spec = spec.len();
        for (n, def) in spec.iter().chain(custom).enumerate() {
            let is_custom = n >= n_spec;
            let Some(kind) = ParamKind::from_code(&def.kind) else {
                compile_errors.push((def.url.clone(), format!("unknown type {}", def.kind)));
                continue;
            };
            let mut errors = Vec::new();
            for base in &def.base {
                let common = base == RESOURCE || base == "DomainResource";
                let (resource_type, key) = if common {
                    (RESOURCE.to_string(), def.code.clone())
                } else if is_custom {
                    // The definition's fingerprint is part of the key: a changed definition
                    // gets new rows instead of mixing with the old ones.
                    (
                        base.clone(),
                        format!("{base}.{}@{}", def.code, fingerprint(def)),
                    )
                } else {
                    (base.clone(), format!("{base}.{}", def.code))
                };
                let source = match source_for(def, kind, base, &by_url) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(format!("{base}: {e}"));
                        Source::Unsupported(e)
                    }
                };
                let components = def
                    .component
                    .iter()
                    .filter_map(|c| by_url.get(c.definition.as_str()))
                    .filter_map(|d| ParamKind::from_code(&d.kind))
                    .collect();
                let list = by_type.entry(resource_type.clone()).or_default();
                if list.iter().any(|p| p.code == def.code) {
                    continue;
                }
                list.push(SearchParam {
                    code: def.code.clone(),
                    url: def.url.clone(),
                    kind,
                    resource_type,
                    targets: def.target.clone(),
                    expression: def.expression.clone(),
                    components,
                    key,
                    source,
                    kid: KeyIds::default(),
                    search_keys: Vec::new(),
                    search_parts: Vec::new(),
                    shares_parts: false,
                    custom: is_custom,
                    pending: false,
                });
            }
            if !errors.is_empty() {
                if is_custom {
                    custom_errors.push((def.url.clone(), errors.join("; ")));
                } else {
                    compile_errors.push((def.url.clone(), errors.join("; ")));
                }
            }
        }
        for list in by_type.values_mut() {
            list.sort_by(|a, b| a.code.cmp(&b.code));
            for p in list.iter_mut() {
                p.search_keys = vec![p.key.clone()];
            }
            find_aliases(list);
            crate::composite::link_parts(list);
        }
        // Number the keys: one per key string (common parameters share theirs), in a
        // deterministic order.
        let mut keys: Vec<String> = Vec::new();
        let mut number: HashMap<String, u32> = HashMap::new();
        let mut intern = |k: String| -> u32 {
            *number.entry(k.clone()).or_insert_with(|| {
                keys.push(k);
                (keys.len() - 1) as u32
            })
        };
        let mut types: Vec<&String> = by_type.keys().collect();
        types.sort();
        let types: Vec<String> = types.into_iter().cloned().collect();
        for t in types {
            for p in by_type.get_mut(&t).into_iter().flatten() {
                if !p.is_indexed() {
                    p.kid = KeyIds {
                        base: NO_KEY,
                        text: NO_KEY,
                        of_type: NO_KEY,
                        identifier: NO_KEY,
                        comps: Vec::new(),
                    };
                    continue;
                }
                let k = p.key.clone();
                p.kid = KeyIds {
                    base: intern(k.clone()),
                    text: NO_KEY,
                    of_type: NO_KEY,
                    identifier: NO_KEY,
                    comps: Vec::new(),
                };
                match p.kind {
                    ParamKind::Token => {
                        p.kid.text = intern(format!("{k}{TEXT_SUFFIX}"));
                        p.kid.of_type = intern(format!("{k}{OF_TYPE_SUFFIX}"));
                    }
                    ParamKind::Reference => {
                        p.kid.identifier = intern(format!("{k}{IDENTIFIER_SUFFIX}"));
                    }
                    ParamKind::Composite if !p.shares_parts => {
                        let comps = (0..p.components.len())
                            .map(|i| intern(crate::composite::own_part(p, i)))
                            .collect();
                        p.kid.comps = comps;
                    }
                    _ => {}
                }
            }
        }
        let reg = Registry {
            by_type,
            keys,
            compile_errors,
            definitions: n_spec,
        };
        (reg, custom_errors)
    }
}

impl SearchParam {
    /// The index keys this parameter's rows are written under (none for an alias).
    pub fn index_keys(&self, reg: &Registry) -> Vec<String> {
        let k = &self.kid;
        [k.base, k.text, k.of_type, k.identifier]
            .into_iter()
            .chain(k.comps.iter().copied())
            .filter(|&n| n != NO_KEY)
            .map(|n| reg.keys[n as usize].clone())
            .collect()
    }
}

/// Compiled path walkers for `expression` on `base`, or, when it is beyond the path compiler,
/// the parsed expression for the FHIRPath engine.
fn paths_or_fhirpath(expression: &str, base: &str) -> Result<Source, String> {
    match expr::compile(expression, base) {
        Ok(roots) => Ok(Source::Paths(roots)),
        Err(e) => match issho_fhirpath::parse(expression) {
            Ok(x) => Ok(Source::FhirPath(Arc::new(x))),
            Err(_) => Err(e),
        },
    }
}

/// A short stable hash of what decides a custom parameter's rows (FNV-1a, 64 bits, hex).
fn fingerprint(def: &SearchParamDef) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&def.kind);
    eat(def.expression.as_deref().unwrap_or(""));
    for t in &def.target {
        eat(t);
    }
    for c in &def.component {
        eat(&c.definition);
        eat(&c.expression);
    }
    format!("{h:016x}")
}

/// Whether a custom definition can join the specification's parameters and `others`.
fn check_custom(def: &SearchParamDef, others: &[SearchParamDef]) -> Result<(), String> {
    let code_ok = !def.code.is_empty()
        && !def.code.starts_with('_')
        && def
            .code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !code_ok || def.code.contains('.') {
        return Err(format!(
            "code '{}' is not a usable parameter name (letters, digits, '-' and '_'; not starting with '_')",
            def.code
        ));
    }
    let Some(kind) = ParamKind::from_code(&def.kind) else {
        return Err(format!("unknown type '{}'", def.kind));
    };
    if kind == ParamKind::Special {
        return Err("parameters of type 'special' cannot be defined".into());
    }
    if def
        .expression
        .as_deref()
        .is_none_or(|e| e.trim().is_empty())
    {
        return Err("an expression is required".into());
    }
    if def.base.is_empty() {
        return Err("a base resource type is required".into());
    }
    if def.url.is_empty() {
        return Err("a url is required".into());
    }
    let spec = Registry::r4();
    for base in &def.base {
        if !r4().is_resource_type(base) {
            return Err(format!("base '{base}' is not a resource type"));
        }
        if let Some(p) = spec.param(base, &def.code) {
            return Err(format!(
                "{base} already has the parameter '{}' ({})",
                def.code, p.url
            ));
        }
        if others
            .iter()
            .any(|o| o.code == def.code && o.base.contains(base))
        {
            return Err(format!(
                "another SearchParameter already defines '{}' for {base}",
                def.code
            ));
        }
        if kind == ParamKind::Composite {
            for c in &def.component {
                let known = spec.definitions_by_url(&c.definition)
                    || others.iter().any(|o| o.url == c.definition);
                if !known {
                    return Err(format!("unknown component definition {}", c.definition));
                }
            }
        } else {
            paths_or_fhirpath(def.expression.as_deref().unwrap_or_default(), base)
                .map_err(|e| format!("expression for {base}: {e}"))?;
        }
    }
    if kind == ParamKind::Reference && def.target.iter().any(|t| !r4().is_resource_type(t)) {
        return Err("a target is not a resource type".into());
    }
    Ok(())
}

fn source_for(
    def: &SearchParamDef,
    kind: ParamKind,
    base: &str,
    by_url: &HashMap<&str, &SearchParamDef>,
) -> Result<Source, String> {
    match def.code.as_str() {
        "_id" => return Ok(Source::Id),
        "_lastUpdated" => return Ok(Source::LastUpdated),
        "_text" => return Ok(Source::Narrative),
        "_content" => return Ok(Source::Content),
        _ => {}
    }
    let Some(expression) = &def.expression else {
        return Err(format!("{} has no expression", def.code));
    };
    if base == "Patient" && def.code == "deceased" {
        return Ok(Source::Deceased);
    }
    if kind == ParamKind::Special {
        if base == "Location" && def.code == "near" {
            return Ok(Source::Position(expr::compile(expression, base)?));
        }
        return Err(format!("special parameter {} is not implemented", def.code));
    }
    if kind != ParamKind::Composite {
        return paths_or_fhirpath(expression, base);
    }
    // Resource-level parameters compile against `Resource`, whose elements every type has.
    let roots = expr::compile(expression, base)?;
    let mut out = Vec::new();
    for root in roots {
        let mut comps = Vec::new();
        for c in &def.component {
            if !by_url.contains_key(c.definition.as_str()) {
                return Err(format!("unknown component {}", c.definition));
            }
            comps.push(expr::compile_relative(&c.expression, base, &root)?);
        }
        out.push((root, comps));
    }
    Ok(Source::Composite(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lookups() {
        let reg = Registry::r4();
        let p = reg.param("Observation", "code").unwrap();
        assert_eq!(p.kind, ParamKind::Token);
        assert_eq!(p.key, "Observation.code");
        let t = reg.param("Observation", "_tag").unwrap();
        assert_eq!(t.key, "_tag");
        assert!(reg.param("Observation", "_id").is_some());
        assert!(reg.param("Observation", "birthdate").is_none());
        assert!(reg.param("NotAType", "_id").is_none());
        let n = reg.params_for("Patient").count();
        assert!(n > 30, "{n}");
        let c = reg.param("Observation", "code-value-quantity").unwrap();
        assert_eq!(c.components, vec![ParamKind::Token, ParamKind::Quantity]);
        assert!(c.is_supported());
    }

    /// Parameters that are unions of others are searched through their rows.
    #[test]
    fn aliases() {
        let reg = Registry::r4();
        let keys = |t: &str, c: &str| {
            let mut k = reg.param(t, c).unwrap().search_keys.clone();
            k.sort();
            k
        };
        assert_eq!(
            keys("Observation", "combo-code"),
            vec!["Observation.code", "Observation.component-code"]
        );
        assert_eq!(
            keys("Observation", "combo-value-quantity"),
            vec![
                "Observation.component-value-quantity",
                "Observation.value-quantity"
            ]
        );
        assert_eq!(
            keys("Observation", "combo-code-value-quantity"),
            vec![
                "Observation.code-value-quantity",
                "Observation.component-code-value-quantity"
            ]
        );
        assert_eq!(keys("Observation", "code"), vec!["Observation.code"]);
        let all: usize = reg.by_type.values().flatten().count();
        let aliased: Vec<String> = reg
            .by_type
            .values()
            .flatten()
            .filter(|p| !p.is_indexed())
            .map(|p| format!("{} = {:?}", p.key, p.search_keys))
            .collect();
        println!(
            "{} of {all} parameters searched through others:",
            aliased.len()
        );
        for a in aliased {
            println!("  {a}");
        }
    }

    fn custom_def(code: &str, expression: &str) -> SearchParamDef {
        serde_json::from_value(serde_json::json!({
            "url": format!("https://issho.example/sp/{code}"),
            "code": code, "base": ["Patient"], "type": "string", "expression": expression
        }))
        .unwrap()
    }

    /// Custom parameters join the registry with their own keys (carrying the definition's
    /// fingerprint), are searchable once ready, and refused while pending.
    #[test]
    fn custom_parameters() {
        let defs = vec![
            custom_def("nickname", "Patient.name.where(use='nickname').given"),
            // Beyond the path compiler: evaluated by the FHIRPath engine.
            custom_def(
                "kana",
                "Patient.name.where(extension('http://x').value.as(code)='SYL' and use='usual').text",
            ),
            custom_def("name", "Patient.name.text"),
            custom_def("nickname", "Patient.name.given"),
        ];
        let (mut reg, rejected) = Registry::with_custom(&defs);
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        assert!(rejected[0].1.contains("already has the parameter"));
        assert!(rejected[1].1.contains("another SearchParameter"));
        let p = reg.param("Patient", "nickname").unwrap().clone();
        assert!(p.custom && !p.pending);
        assert!(p.key.starts_with("Patient.nickname@"), "{}", p.key);
        assert!(matches!(
            reg.param("Patient", "kana").unwrap().source,
            Source::FhirPath(_)
        ));
        let keys = reg.custom_keys();
        assert_eq!(keys.len(), 2);
        let pairs = vec![("nickname".to_string(), "Taro".to_string())];
        assert!(crate::parse_in(&reg, Some("Patient"), &pairs, true).is_ok());
        reg.set_pending(&keys.iter().take(1).cloned().collect());
        let pending: Vec<&str> = reg
            .custom_params()
            .filter(|p| p.pending)
            .map(|p| p.code.as_str())
            .collect();
        assert_eq!(pending.len(), 1);
        let pairs = vec![(pending[0].to_string(), "x".to_string())];
        let err = crate::parse_in(&reg, Some("Patient"), &pairs, true).unwrap_err();
        assert!(err[0].diagnostics.contains("being indexed"), "{err:?}");
        // The specification's registry is untouched.
        assert!(Registry::r4().param("Patient", "nickname").is_none());
        // A changed definition gets another key.
        let (reg2, _) = Registry::with_custom(&[custom_def("nickname", "Patient.name.given")]);
        assert_ne!(reg2.param("Patient", "nickname").unwrap().key, p.key);
        // And a search with it extracts rows.
        let pat = serde_json::json!({"resourceType": "Patient",
            "name": [{"use": "nickname", "given": ["Taro"]}, {"given": ["Jiro"]}]});
        let rows = crate::extract_in(&reg2, &pat);
        let k = reg2.param("Patient", "nickname").unwrap().kid.base;
        assert_eq!(rows.iter().filter(|r| r.key == k).count(), 2);
    }

    /// Coverage of the R4 expressions by the path compiler (printed for the report).
    #[test]
    fn expression_compile_coverage() {
        let reg = Registry::r4();
        let total = reg.definition_count();
        let failed = reg.compile_errors();
        println!(
            "compiled {}/{} search parameter expressions",
            total - failed.len(),
            total
        );
        for (url, why) in failed {
            println!("  not compiled: {url}: {why}");
        }
        // R4's 1375 and ViewDefinition's 6 (issho-model's issho-types.json).
        assert_eq!(total, 1381);
        assert!(failed.len() <= 8, "{failed:#?}");
    }
}
