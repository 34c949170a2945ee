//! The search parameters of R4, compiled once: by (resource type, code).

use crate::expr::{self, Path};
use issho_model::{SearchParamDef, r4};
use std::collections::HashMap;
use std::sync::OnceLock;

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
    /// Composite: root paths, and for each root the components' paths relative to it.
    Composite(Vec<(Path, Vec<Vec<Path>>)>),
    /// `_id`: the `resources.id` column.
    Id,
    /// `_lastUpdated`: the `resources.last_updated` column.
    LastUpdated,
    /// `Patient.deceased.exists() and Patient.deceased != false`: a computed boolean token.
    Deceased,
    /// Not searchable here (`_text`, `_content`, `_query`, `near`, or a compile failure).
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
}

impl SearchParam {
    /// False when the parameter is defined but issho cannot evaluate it (reported in the
    /// CapabilityStatement as absent; a search using it is refused as not supported).
    pub fn is_supported(&self) -> bool {
        !matches!(self.source, Source::Unsupported(_))
    }
    /// Why the parameter is not supported, if it is not.
    pub fn unsupported_reason(&self) -> Option<&str> {
        match &self.source {
            Source::Unsupported(r) => Some(r),
            _ => None,
        }
    }
}

/// All R4 search parameters by (resource type, code).
pub struct Registry {
    by_type: HashMap<String, Vec<SearchParam>>,
    /// Per definition URL: compile errors (empty when every base compiled).
    compile_errors: Vec<(String, String)>,
    definitions: usize,
}

const RESOURCE: &str = "Resource";

impl Registry {
    /// The registry of the R4 specification's parameters, built on first use.
    pub fn r4() -> &'static Registry {
        static REG: OnceLock<Registry> = OnceLock::new();
        REG.get_or_init(Registry::build)
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

    /// Definitions (URL, reason) whose expression could not be compiled to a path walker.
    pub fn compile_errors(&self) -> &[(String, String)] {
        &self.compile_errors
    }

    fn build() -> Registry {
        let defs = r4().search_parameters();
        let by_url: HashMap<&str, &SearchParamDef> =
            defs.iter().map(|d| (d.url.as_str(), d)).collect();
        let mut by_type: HashMap<String, Vec<SearchParam>> = HashMap::new();
        let mut compile_errors = Vec::new();
        for def in defs {
            let Some(kind) = ParamKind::from_code(&def.kind) else {
                compile_errors.push((def.url.clone(), format!("unknown type {}", def.kind)));
                continue;
            };
            let mut errors = Vec::new();
            for base in &def.base {
                let common = base == RESOURCE || base == "DomainResource";
                let (resource_type, key) = if common {
                    (RESOURCE.to_string(), def.code.clone())
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
                });
            }
            if !errors.is_empty() {
                compile_errors.push((def.url.clone(), errors.join("; ")));
            }
        }
        for list in by_type.values_mut() {
            list.sort_by(|a, b| a.code.cmp(&b.code));
        }
        Registry {
            by_type,
            compile_errors,
            definitions: defs.len(),
        }
    }
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
        _ => {}
    }
    let Some(expression) = &def.expression else {
        return Err(format!("{} has no expression", def.code));
    };
    if base == "Patient" && def.code == "deceased" {
        return Ok(Source::Deceased);
    }
    if kind == ParamKind::Special {
        return Err(format!("special parameter {} is not implemented", def.code));
    }
    // Resource-level parameters compile against `Resource`, whose elements every type has.
    let roots = expr::compile(expression, base)?;
    if kind != ParamKind::Composite {
        return Ok(Source::Paths(roots));
    }
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
        assert_eq!(total, 1375);
        assert!(failed.len() <= 8, "{failed:#?}");
    }
}
