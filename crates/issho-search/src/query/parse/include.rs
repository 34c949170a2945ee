//! `_include` and `_revinclude` (with `:iterate`): `Type:param[:target]` and `*`.

use super::*;

pub(super) fn parse_include(
    reg: &Registry,
    name: &str,
    value: &str,
    iterate: bool,
) -> Result<Include, Fail> {
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
