//! The terminology operations of R4 (terminology-service.html): `CodeSystem/$lookup`,
//! `CodeSystem/$validate-code`, `ValueSet/$validate-code`, `ValueSet/$expand`,
//! `CodeSystem/$subsumes` and `ConceptMap/$translate`, at type level (`url`, `system`) and
//! instance level (the resource the caller named). Displays come in `displayLanguage` when a
//! designation has it (Japanese code systems answer in Japanese by default).

use crate::expand::{Entry, Options, expand, expand_resource};
use crate::system::CodeSystem;
use crate::text::Filter;
use crate::{Source, jp};
use serde_json::{Value, json};
use std::sync::Arc;

mod input;
pub use input::{Coding, OpError, Params};
use input::{R, bad, not_found};

/// The most codes an `$expand` (or a `$validate-code` against a value set) may enumerate.
pub const MAX_EXPANSION: usize = 100_000;

fn param(name: &str, value_key: &str, value: Value) -> Value {
    let mut p = json!({"name": name});
    p[value_key] = value;
    p
}

fn parameters(list: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": list})
}

/// The code system an operation is about: the instance, or `system`/`url` (+ `version`).
fn code_system_of(
    src: &dyn Source,
    instance: Option<&Value>,
    system: Option<&str>,
    version: Option<&str>,
) -> R<Arc<CodeSystem>> {
    if let Some(cs) = instance {
        return Ok(Arc::new(CodeSystem::of(cs)));
    }
    let Some(system) = system else {
        return Err(bad(
            "name the code system (system, url or a coding with a system)",
        ));
    };
    src.code_system(system, version).ok_or_else(|| {
        not_found(match jp::format_of(system) {
            Some(f) => format!(
                "the content of {system} ({}) is not loaded here: load it with issho terminology import",
                f.name
            ),
            None => format!("unknown code system {system}"),
        })
    })
}

/// `CodeSystem/$lookup`: the concept's name, version, display, designations and properties
/// (with `parent` and `child`).
pub fn lookup(src: &dyn Source, p: &Params, instance: Option<&Value>) -> R<Value> {
    let coding = match p.coding("coding")? {
        Some(c) => c,
        None => Coding {
            system: p.str("system").map(str::to_string),
            version: p.str("version").map(str::to_string),
            code: p
                .str("code")
                .ok_or_else(|| bad("$lookup needs code and system, or coding"))?
                .to_string(),
            display: None,
        },
    };
    let cs = code_system_of(
        src,
        instance,
        coding.system.as_deref(),
        coding.version.as_deref(),
    )?;
    let Some(c) = cs.get(&coding.code) else {
        return Err(not_found(format!(
            "'{}' is not a code of {}",
            coding.code, cs.url
        )));
    };
    let lang = p.lang();
    let wanted = p.strs("property");
    let wants = |k: &str| wanted.is_empty() || wanted.contains(&k);
    let mut out = vec![param(
        "name",
        "valueString",
        json!(cs.name.clone().unwrap_or(cs.url.clone())),
    )];
    if let Some(v) = &cs.version {
        out.push(param("version", "valueString", json!(v)));
    }
    if let Some(d) = cs.display_in(c, lang.as_deref()) {
        out.push(param("display", "valueString", json!(d)));
    }
    if let Some(d) = &c.definition
        && wants("definition")
    {
        out.push(param("definition", "valueString", json!(d)));
    }
    for d in &c.designations {
        let mut parts = Vec::new();
        if let Some(l) = &d.language {
            parts.push(param("language", "valueCode", json!(l)));
        }
        if let Some(u) = &d.use_ {
            parts.push(param("use", "valueCoding", u.clone()));
        }
        parts.push(param("value", "valueString", json!(d.value)));
        out.push(json!({"name": "designation", "part": parts}));
    }
    for prop in &c.properties {
        let Some(code) = prop["code"].as_str() else {
            continue;
        };
        if !wants(code) {
            continue;
        }
        let mut parts = vec![param("code", "valueCode", json!(code))];
        if let Some((k, v)) = prop
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
        {
            parts.push(param("value", k, v.clone()));
        }
        out.push(json!({"name": "property", "part": parts}));
    }
    for (name, codes) in [
        ("parent", cs.parents_of(&c.code)),
        ("child", cs.children_of(&c.code)),
    ] {
        if !wants(name) || c.properties.iter().any(|x| x["code"] == name) {
            continue;
        }
        for k in codes {
            out.push(json!({"name": "property", "part": [
                param("code", "valueCode", json!(name)),
                param("value", "valueCode", json!(k))]}));
        }
    }
    Ok(parameters(out))
}

/// The verdict of `$validate-code`.
fn verdict(result: bool, message: Option<String>, display: Option<String>) -> Value {
    let mut out = vec![param("result", "valueBoolean", json!(result))];
    if let Some(m) = message {
        out.push(param("message", "valueString", json!(m)));
    }
    if let Some(d) = display {
        out.push(param("display", "valueString", json!(d)));
    }
    parameters(out)
}

/// The codings `$validate-code` checks: `coding`, `codeableConcept`, or `code` (+ system).
fn codings_of(p: &Params, system_param: &str) -> R<Vec<Coding>> {
    if let Some(c) = p.coding("coding")? {
        return Ok(vec![c]);
    }
    let cc = p.codeable("codeableConcept")?;
    if !cc.is_empty() {
        return Ok(cc);
    }
    let code = p
        .str("code")
        .ok_or_else(|| bad("$validate-code needs code, coding or codeableConcept"))?;
    Ok(vec![Coding {
        system: p.str(system_param).map(str::to_string),
        version: p
            .str(if system_param == "url" {
                "version"
            } else {
                "systemVersion"
            })
            .map(str::to_string),
        code: code.to_string(),
        display: p.str("display").map(str::to_string),
    }])
}

/// Whether `display` is one of the concept's (its display or a designation).
fn display_ok(cs: &CodeSystem, code: &str, display: &str) -> Option<String> {
    let c = cs.get(code)?;
    let known = c
        .display
        .iter()
        .chain(c.designations.iter().map(|d| &d.value));
    if known.clone().any(|d| d == display) {
        None
    } else {
        Some(c.display.clone().unwrap_or_default())
    }
}

/// `CodeSystem/$validate-code`: is the code in the code system (and the display one of its
/// own)? A Japanese system whose content is not loaded is checked by its format.
pub fn validate_code_in_system(src: &dyn Source, p: &Params, instance: Option<&Value>) -> R<Value> {
    let lang = p.lang();
    let mut last = None;
    for c in codings_of(p, "url")? {
        let system = instance
            .and_then(|i| i["url"].as_str().map(str::to_string))
            .or(c.system.clone());
        let cs = match code_system_of(src, instance, system.as_deref(), c.version.as_deref()) {
            Ok(cs) => cs,
            Err(e) if e.status == 404 => {
                if let Some(f) = system.as_deref().and_then(jp::format_of) {
                    let (ok, why) = f.check(&c.code);
                    return Ok(verdict(ok, Some(why), None));
                }
                return Ok(verdict(false, Some(e.issue.diagnostics), None));
            }
            Err(e) => return Err(e),
        };
        let Some(concept) = cs.get(&c.code) else {
            last = Some(verdict(
                false,
                Some(format!("'{}' is not a code of {}", c.code, cs.url)),
                None,
            ));
            continue;
        };
        let shown = cs.display_in(concept, lang.as_deref());
        if let Some(d) = &c.display
            && let Some(expected) = display_ok(&cs, &c.code, d)
        {
            return Ok(verdict(
                false,
                Some(format!(
                    "'{d}' is not a display of {}#{} (it is '{expected}')",
                    cs.url, c.code
                )),
                shown,
            ));
        }
        return Ok(verdict(true, None, shown));
    }
    Ok(last.unwrap_or_else(|| verdict(false, Some("nothing to validate".into()), None)))
}

/// The value set an operation is about: the instance, `valueSet` (a resource), or `url`
/// (+ `valueSetVersion`).
fn value_set_of(p: &Params, instance: Option<&Value>) -> R<Result<Value, String>> {
    if let Some(vs) = instance {
        return Ok(Ok(vs.clone()));
    }
    if let Some(vs) = p.resource("valueSet") {
        return Ok(Ok(vs.clone()));
    }
    let url = p
        .str("url")
        .ok_or_else(|| bad("name the value set (url, or valueSet)"))?;
    Ok(Err(match p.str("valueSetVersion") {
        Some(v) => format!("{url}|{v}"),
        None => url.to_string(),
    }))
}

fn expansion_of(src: &dyn Source, vs: &Result<Value, String>, o: &Options) -> R<Vec<Entry>> {
    let e = match vs {
        Ok(v) => expand_resource(src, v, o)?,
        Err(reference) => expand(src, reference, o)?,
    };
    Ok(e.entries)
}

/// `ValueSet/$validate-code`: is the code in the value set's expansion?
pub fn validate_code_in_value_set(
    src: &dyn Source,
    p: &Params,
    instance: Option<&Value>,
) -> R<Value> {
    let vs = value_set_of(p, instance)?;
    let o = Options {
        limit: MAX_EXPANSION,
        lang: p.lang(),
    };
    let entries = expansion_of(src, &vs, &o)?;
    let abstract_ok = p.bool("abstract")?.unwrap_or(false);
    let name = match &vs {
        Ok(v) => v["url"].as_str().unwrap_or("the value set").to_string(),
        Err(r) => r.clone(),
    };
    let mut why = None;
    for c in codings_of(p, "system")? {
        let found = entries
            .iter()
            .find(|e| e.code == c.code && c.system.as_deref().is_none_or(|s| s == e.system));
        match found {
            Some(e) if e.is_abstract && !abstract_ok => {
                why = Some(format!("'{}' is abstract in {name}", c.code));
            }
            Some(e) => {
                if let (Some(d), Some(known)) = (&c.display, &e.display)
                    && d != known
                    && !e.designations.iter().any(|x| &x.value == d)
                {
                    return Ok(verdict(
                        false,
                        Some(format!(
                            "'{d}' is not a display of {}#{} (it is '{known}')",
                            e.system, e.code
                        )),
                        e.display.clone(),
                    ));
                }
                return Ok(verdict(true, None, e.display.clone()));
            }
            None => {
                why = Some(format!(
                    "{}'{}' is not in {name}",
                    c.system
                        .as_deref()
                        .map(|s| format!("{s}#"))
                        .unwrap_or_default(),
                    c.code
                ));
            }
        }
    }
    Ok(verdict(false, why, None))
}

/// `ValueSet/$expand`: the value set with an `expansion` — `filter` (words matched in the
/// code, the display and the designations, NFKC and kana folded), `offset`/`count` paging,
/// `displayLanguage`, `includeDesignations`, `activeOnly`.
pub fn expand_value_set(
    src: &dyn Source,
    p: &Params,
    instance: Option<&Value>,
    now: &str,
) -> R<Value> {
    let vs = value_set_of(p, instance)?;
    let lang = p.lang();
    let o = Options {
        limit: MAX_EXPANSION,
        lang: lang.clone(),
    };
    let mut entries = expansion_of(src, &vs, &o)?;
    if p.bool("activeOnly")?.unwrap_or(false) {
        entries.retain(|e| !e.inactive);
    }
    let filter = p.str("filter").map(Filter::new);
    if let Some(f) = filter.as_ref().filter(|f| !f.is_empty()) {
        entries.retain(|e| e.matches(f));
    }
    let total = entries.len();
    let offset = p.count("offset")?.unwrap_or(0);
    let count = p.count("count")?.unwrap_or(total);
    let designations = p.bool("includeDesignations")?.unwrap_or(false);
    let contains: Vec<Value> = entries
        .iter()
        .skip(offset)
        .take(count)
        .map(|e| {
            let mut c = json!({"system": e.system, "code": e.code});
            if let Some(v) = &e.version {
                c["version"] = json!(v);
            }
            if let Some(d) = &e.display {
                c["display"] = json!(d);
            }
            if e.is_abstract {
                c["abstract"] = json!(true);
            }
            if e.inactive {
                c["inactive"] = json!(true);
            }
            if designations && !e.designations.is_empty() {
                c["designation"] =
                    Value::Array(e.designations.iter().map(|d| d.to_json()).collect());
            }
            c
        })
        .collect();
    let mut used = Vec::new();
    if let Some(f) = p.str("filter") {
        used.push(param("filter", "valueString", json!(f)));
    }
    if let Some(l) = &lang {
        used.push(param("displayLanguage", "valueCode", json!(l)));
    }
    used.push(param("offset", "valueInteger", json!(offset)));
    used.push(param("count", "valueInteger", json!(count)));
    let mut out = match &vs {
        Ok(v) => {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("compose");
                o.remove("expansion");
                o.remove("text");
            }
            v
        }
        Err(r) => {
            let (url, version) = match r.split_once('|') {
                Some((u, v)) => (u, Some(v)),
                None => (r.as_str(), None),
            };
            match src.by_url("ValueSet", url, version) {
                Some(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("compose");
                        o.remove("expansion");
                        o.remove("text");
                    }
                    v
                }
                None => json!({"resourceType": "ValueSet", "url": url, "status": "active"}),
            }
        }
    };
    out["expansion"] = json!({
        "identifier": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "timestamp": now,
        "total": total,
        "offset": offset,
        "parameter": used,
    });
    if !contains.is_empty() {
        out["expansion"]["contains"] = Value::Array(contains);
    }
    Ok(out)
}

/// `CodeSystem/$subsumes`: equivalent, subsumes, subsumed-by or not-subsumed.
pub fn subsumes(src: &dyn Source, p: &Params, instance: Option<&Value>) -> R<Value> {
    let a = match p.coding("codingA")? {
        Some(c) => c,
        None => Coding {
            system: p.str("system").map(str::to_string),
            code: p
                .str("codeA")
                .ok_or_else(|| bad("$subsumes needs codeA and codeB, or codingA and codingB"))?
                .to_string(),
            ..Default::default()
        },
    };
    let b = match p.coding("codingB")? {
        Some(c) => c,
        None => Coding {
            system: p.str("system").map(str::to_string),
            code: p
                .str("codeB")
                .ok_or_else(|| bad("$subsumes needs codeA and codeB, or codingA and codingB"))?
                .to_string(),
            ..Default::default()
        },
    };
    if a.system.is_some() && b.system.is_some() && a.system != b.system {
        return Err(bad("codingA and codingB are of different code systems"));
    }
    let system = a.system.clone().or(b.system.clone());
    let cs = code_system_of(src, instance, system.as_deref(), p.str("version"))?;
    for c in [&a, &b] {
        if cs.get(&c.code).is_none() {
            return Err(not_found(format!(
                "'{}' is not a code of {}",
                c.code, cs.url
            )));
        }
    }
    let outcome = if a.code == b.code {
        "equivalent"
    } else if cs.is_a(&b.code, &a.code) {
        "subsumes"
    } else if cs.is_a(&a.code, &b.code) {
        "subsumed-by"
    } else {
        "not-subsumed"
    };
    Ok(parameters(vec![param(
        "outcome",
        "valueCode",
        json!(outcome),
    )]))
}

/// `ConceptMap/$translate`: the mappings of a code (from the ConceptMap named, or every one
/// whose group maps from the code's system), narrowed to `targetsystem`; `reverse` maps
/// from target to source.
pub fn translate(src: &dyn Source, p: &Params, instance: Option<&Value>) -> R<Value> {
    let coding = match p.coding("coding")? {
        Some(c) => c,
        None => {
            let cc = p.codeable("codeableConcept")?;
            match cc.into_iter().next() {
                Some(c) => c,
                None => Coding {
                    system: p.str("system").map(str::to_string),
                    code: p
                        .str("code")
                        .ok_or_else(|| {
                            bad("$translate needs code and system, coding or codeableConcept")
                        })?
                        .to_string(),
                    ..Default::default()
                },
            }
        }
    };
    let reverse = p.bool("reverse")?.unwrap_or(false);
    let maps: Vec<Value> = if let Some(cm) = instance {
        vec![cm.clone()]
    } else if let Some(url) = p.str("url") {
        vec![
            src.by_url("ConceptMap", url, p.str("conceptMapVersion"))
                .ok_or_else(|| not_found(format!("unknown concept map {url}")))?,
        ]
    } else if reverse {
        src.concept_maps(None)
    } else {
        src.concept_maps(coding.system.as_deref())
    };
    let target_system = p.str("targetsystem");
    let mut matches = Vec::new();
    for cm in &maps {
        let url = cm["url"].as_str().unwrap_or_default();
        for g in cm["group"].as_array().into_iter().flatten() {
            let (from, to) = if reverse {
                ("target", "source")
            } else {
                ("source", "target")
            };
            let from_system = g[from].as_str();
            if coding.system.is_some()
                && from_system.is_some()
                && coding.system.as_deref() != from_system
            {
                continue;
            }
            let to_system = g[to].as_str().unwrap_or_default();
            if target_system.is_some_and(|t| t != to_system) {
                continue;
            }
            for el in g["element"].as_array().into_iter().flatten() {
                for t in el["target"].as_array().into_iter().flatten() {
                    let (key, value) = if reverse { (t, el) } else { (el, t) };
                    if key["code"].as_str() != Some(coding.code.as_str()) {
                        continue;
                    }
                    let Some(code) = value["code"].as_str() else {
                        continue;
                    };
                    let mut concept = json!({"system": to_system, "code": code});
                    if let Some(d) = value["display"].as_str() {
                        concept["display"] = json!(d);
                    }
                    matches.push(json!({"name": "match", "part": [
                        param("equivalence", "valueCode", json!(t["equivalence"].as_str().unwrap_or("equivalent"))),
                        param("concept", "valueCoding", concept),
                        param("source", "valueUri", json!(url)),
                    ]}));
                }
            }
        }
    }
    let ok = matches.iter().any(|m| {
        !matches!(
            m["part"][0]["valueCode"].as_str(),
            Some("unmatched" | "disjoint")
        )
    });
    let mut out = vec![param("result", "valueBoolean", json!(ok))];
    if !ok {
        out.push(param(
            "message",
            "valueString",
            json!(format!("no mapping of '{}' was found", coding.code)),
        ));
    }
    out.extend(matches);
    Ok(parameters(out))
}

#[cfg(test)]
mod tests;
