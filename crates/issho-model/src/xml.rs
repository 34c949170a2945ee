//! FHIR XML ⇄ FHIR JSON, driven by the R4 tables (FHIR R4 xml.html and json.html).
//!
//! The two formats carry the same content: in XML a primitive is an element with a `value`
//! attribute (its `id` as an attribute and its extensions as child elements, which become the
//! `_name` sibling in JSON); `Element.id` and `Extension.url` are attributes; whether an element
//! is a JSON array, and whether a value is a JSON string, number or boolean, comes from the
//! element definitions; narrative `div` is XHTML kept as text in JSON; resources inside
//! resources (`contained`, `Bundle.entry.resource`) are wrapped in the element that holds them.

use crate::validate::formats::is_decimal_text;
use crate::validate::schema::{Elem, ElemType, Kind, Prim, Schema, Scope, ScopeId, schema};
use crate::validate::sibling_ext;
use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// The FHIR XML namespace.
pub const FHIR_NS: &str = "http://hl7.org/fhir";
/// The XHTML namespace of narrative `div` elements.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// Convert a FHIR XML resource to its FHIR JSON tree.
///
/// Decimals keep their exact text. Fails on malformed XML, elements unknown to the R4
/// definitions, values that cannot be typed (`<active value="yes"/>`), or an element repeated
/// where the definitions allow only one.
pub fn xml_to_json(xml: &str) -> Result<Value, String> {
    let mut p = XmlIn {
        r: Reader::from_str(xml),
        src: xml,
        s: schema(),
        depth: 0,
    };
    loop {
        match p.next()? {
            Event::Start(e) => {
                let v = p.resource(&e, false, true)?;
                p.expect_end_of_document()?;
                return Ok(Value::Object(v));
            }
            Event::Empty(e) => {
                let v = p.resource(&e, true, true)?;
                p.expect_end_of_document()?;
                return Ok(Value::Object(v));
            }
            Event::Text(t) if is_blank(&t) => {}
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::DocType(_) => return Err("DOCTYPE declarations are not allowed".into()),
            Event::Eof => return Err("the document has no root element".into()),
            _ => return Err("unexpected content before the root element".into()),
        }
    }
}

/// Convert a FHIR JSON resource to FHIR XML (no XML declaration; elements in the order of the
/// definitions). Fails on content that has no place in FHIR XML (unknown elements, wrong JSON
/// types).
pub fn json_to_xml(resource: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(1024);
    let Value::Object(obj) = resource else {
        return Err("a resource must be a JSON object".into());
    };
    XmlOut { s: schema() }.resource(&mut out, obj, true)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// XML → JSON

struct XmlIn<'a> {
    r: Reader<&'a [u8]>,
    src: &'a str,
    s: &'static Schema,
    /// Element nesting depth, bounded by [`MAX_DEPTH`] (the converter recurses per level).
    depth: usize,
}

/// Deepest element nesting accepted, as serde_json's JSON limit (128): real resources stay far
/// below it; anything deeper is refused instead of exhausting the thread's stack.
pub const MAX_DEPTH: usize = 128;

/// One child element read from XML, before being placed in the JSON object.
enum Item {
    Prim {
        value: Option<Value>,
        ext: Option<Map<String, Value>>,
    },
    Node(Value),
}

fn is_blank(t: &str) -> bool {
    t.bytes().all(|b| b.is_ascii_whitespace())
}

fn local_name<'e>(e: &'e BytesStart<'_>) -> &'e str {
    let full = e.name().0;
    full.rsplit(':').next().unwrap_or(full)
}

impl<'a> XmlIn<'a> {
    fn pos(&self) -> usize {
        self.r.buffer_position() as usize
    }

    fn next(&mut self) -> Result<Event<'a>, String> {
        self.r
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", self.r.error_position()))
    }

    fn expect_end_of_document(&mut self) -> Result<(), String> {
        loop {
            match self.next()? {
                Event::Eof => return Ok(()),
                Event::Text(t) if is_blank(&t) => {}
                Event::Comment(_) | Event::PI(_) => {}
                _ => return Err("unexpected content after the root element".into()),
            }
        }
    }

    /// A resource element (`<Patient>`); `root` requires the FHIR namespace declaration.
    fn resource(
        &mut self,
        e: &BytesStart<'a>,
        empty: bool,
        root: bool,
    ) -> Result<Map<String, Value>, String> {
        let name = local_name(e).to_string();
        let sid = self
            .s
            .type_scope(&name)
            .filter(|&id| {
                let sc = self.s.scope(id);
                sc.is_resource_root && !sc.owner.is_abstract
            })
            .ok_or_else(|| format!("unknown resource type '{name}'"))?;
        let mut ns = None;
        for a in e.attributes() {
            let a = a.map_err(|err| format!("malformed attribute in <{name}>: {err}"))?;
            let key = a.key.0;
            if key == "xmlns" {
                ns = Some(attr_value(&a)?);
            } else if key.starts_with("xmlns:") || key.starts_with("xsi:") {
                // namespace prefixes and schema locations carry no content
            } else {
                return Err(format!("unexpected attribute '{key}' on <{name}>"));
            }
        }
        match ns.as_deref() {
            Some(FHIR_NS) => {}
            None if !root => {}
            Some(other) => {
                return Err(format!(
                    "<{name}> is in namespace '{other}', expected '{FHIR_NS}'"
                ));
            }
            None => return Err(format!("<{name}> must declare xmlns=\"{FHIR_NS}\"")),
        }
        let mut map = Map::new();
        map.insert("resourceType".into(), Value::String(name.clone()));
        if !empty {
            self.children(sid, &mut map, &name)?;
        }
        Ok(map)
    }

    /// Read the child elements up to the end tag of the current element and place them in `map`.
    fn children(
        &mut self,
        sid: ScopeId,
        map: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "elements are nested more than {MAX_DEPTH} levels deep at {path}"
            ));
        }
        let out = self.children_inner(sid, map, path);
        self.depth -= 1;
        out
    }

    fn children_inner(
        &mut self,
        sid: ScopeId,
        map: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), String> {
        let scope = self.s.scope(sid);
        let mut items: Vec<(usize, usize, Item)> = Vec::new();
        loop {
            let pos = self.pos();
            match self.next()? {
                Event::Start(e) => items.push(self.child(scope, &e, false, pos, path)?),
                Event::Empty(e) => items.push(self.child(scope, &e, true, pos, path)?),
                Event::End(_) => break,
                Event::Text(t) if is_blank(&t) => {}
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => return Err(format!("unexpected end of document in {path}")),
                _ => {
                    return Err(format!(
                        "unexpected text in {path}: FHIR XML has values in 'value' attributes"
                    ));
                }
            }
        }
        assemble(scope, items, map, path)
    }

    fn child(
        &mut self,
        scope: &Scope,
        e: &BytesStart<'a>,
        empty: bool,
        pos: usize,
        path: &str,
    ) -> Result<(usize, usize, Item), String> {
        let name = local_name(e);
        let Some((ei, ti)) = scope.lookup(name) else {
            return Err(format!("unknown element '{name}' in {path}"));
        };
        let elem = &scope.elements[ei];
        let ety = &elem.types[ti];
        let here = format!("{path}.{name}");
        let item = match ety.kind {
            Kind::Primitive(Prim::Xhtml) => {
                let start = pos;
                if !empty {
                    self.r
                        .read_to_end(e.name())
                        .map_err(|err| format!("malformed XHTML in {here}: {err}"))?;
                }
                let raw = &self.src[start..self.pos()];
                Item::Prim {
                    value: Some(Value::String(xhtml_with_namespace(raw))),
                    ext: None,
                }
            }
            Kind::Primitive(p) => {
                let mut value = None;
                let mut ext = Map::new();
                for a in e.attributes() {
                    let a = a.map_err(|err| format!("malformed attribute in {here}: {err}"))?;
                    match a.key.0 {
                        "value" => value = Some(typed_value(&attr_value(&a)?, p, &here)?),
                        "id" => {
                            ext.insert("id".into(), Value::String(attr_value(&a)?));
                        }
                        k if k.starts_with("xmlns") => {}
                        k => return Err(format!("unexpected attribute '{k}' on {here}")),
                    }
                }
                if !empty {
                    self.children(self.s.element_scope, &mut ext, &here)?;
                }
                Item::Prim {
                    value,
                    ext: (!ext.is_empty()).then_some(ext),
                }
            }
            Kind::Complex(csid) => {
                let mut map = Map::new();
                let is_extension = is_extension_scope(self.s.scope(csid));
                for a in e.attributes() {
                    let a = a.map_err(|err| format!("malformed attribute in {here}: {err}"))?;
                    match a.key.0 {
                        "id" => {
                            map.insert("id".into(), Value::String(attr_value(&a)?));
                        }
                        "url" if is_extension => {
                            map.insert("url".into(), Value::String(attr_value(&a)?));
                        }
                        k if k.starts_with("xmlns") => {}
                        k => return Err(format!("unexpected attribute '{k}' on {here}")),
                    }
                }
                if !empty {
                    self.children(csid, &mut map, &here)?;
                }
                Item::Node(Value::Object(map))
            }
            Kind::Resource => {
                if empty {
                    return Err(format!("{here} must contain a resource"));
                }
                let mut found = None;
                loop {
                    match self.next()? {
                        Event::Start(inner) if found.is_none() => {
                            found = Some(self.resource(&inner, false, false)?);
                        }
                        Event::Empty(inner) if found.is_none() => {
                            found = Some(self.resource(&inner, true, false)?);
                        }
                        Event::End(_) => break,
                        Event::Text(t) if is_blank(&t) => {}
                        Event::Comment(_) | Event::PI(_) => {}
                        _ => return Err(format!("{here} must contain exactly one resource")),
                    }
                }
                let res = found.ok_or_else(|| format!("{here} must contain a resource"))?;
                Item::Node(Value::Object(res))
            }
        };
        Ok((ei, ti, item))
    }
}

fn attr_value(a: &quick_xml::events::attributes::Attribute<'_>) -> Result<String, String> {
    a.normalized_value(XmlVersion::Implicit1_0)
        .map(|c| c.into_owned())
        .map_err(|e| format!("bad attribute value: {e}"))
}

fn is_extension_scope(scope: &Scope) -> bool {
    scope.prefix.is_empty() && scope.owner.name == "Extension"
}

/// The JSON value of a primitive's `value` attribute, typed by the element's type.
fn typed_value(text: &str, p: Prim, here: &str) -> Result<Value, String> {
    match p {
        Prim::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{here}: '{text}' is not a boolean")),
        },
        Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{here}: '{text}' is not an integer"));
            }
            serde_json::from_str::<Value>(text)
                .map_err(|_| format!("{here}: '{text}' is not an integer"))
        }
        Prim::Decimal => {
            if !is_decimal_text(text) {
                return Err(format!("{here}: '{text}' is not a decimal"));
            }
            serde_json::from_str::<Value>(text)
                .map_err(|_| format!("{here}: '{text}' is not a decimal"))
        }
        _ => Ok(Value::String(text.to_string())),
    }
}

/// Narrative as JSON text: the `div` element as written, with the XHTML namespace declared on it
/// (in XML it may be inherited from an enclosing element).
fn xhtml_with_namespace(raw: &str) -> String {
    let head_end = raw.find('>').unwrap_or(raw.len());
    if raw[..head_end].contains("xmlns=") {
        raw.to_string()
    } else {
        let name_end = raw[1..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .map(|i| i + 1)
            .unwrap_or(raw.len());
        format!(
            "{} xmlns=\"{XHTML_NS}\"{}",
            &raw[..name_end],
            &raw[name_end..]
        )
    }
}

/// Place the child items read from XML into the JSON object: arrays where the element repeats,
/// `_name` siblings for primitive ids and extensions, aligned with `null`s.
fn assemble(
    scope: &Scope,
    items: Vec<(usize, usize, Item)>,
    map: &mut Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    let mut groups: Vec<(usize, usize, Vec<Item>)> = Vec::new();
    for (ei, ti, item) in items {
        match groups.iter_mut().find(|g| g.0 == ei) {
            Some(g) if g.1 != ti => {
                let elem = &scope.elements[ei];
                return Err(format!(
                    "{path}: only one type of {}[x] is allowed ({} and {})",
                    elem.name,
                    elem.key(g.1),
                    elem.key(ti)
                ));
            }
            Some(g) => g.2.push(item),
            None => groups.push((ei, ti, vec![item])),
        }
    }
    for (ei, ti, items) in groups {
        let elem = &scope.elements[ei];
        let key = elem.key(ti);
        if !elem.is_array() && items.len() > 1 {
            return Err(format!(
                "{path}.{key} appears {} times but allows at most one",
                items.len()
            ));
        }
        if let Kind::Primitive(_) = elem.types[ti].kind {
            let mut values = Vec::with_capacity(items.len());
            let mut exts = Vec::with_capacity(items.len());
            for item in items {
                if let Item::Prim { value, ext } = item {
                    values.push(value);
                    exts.push(ext);
                }
            }
            let any_value = values.iter().any(Option::is_some);
            let any_ext = exts.iter().any(Option::is_some);
            if elem.is_array() {
                if any_value {
                    let arr = values
                        .into_iter()
                        .map(|v| v.unwrap_or(Value::Null))
                        .collect();
                    map.insert(key.to_string(), Value::Array(arr));
                }
                if any_ext {
                    let arr = exts
                        .into_iter()
                        .map(|e| e.map(Value::Object).unwrap_or(Value::Null))
                        .collect();
                    map.insert(format!("_{key}"), Value::Array(arr));
                }
            } else {
                if let Some(Some(v)) = values.pop() {
                    map.insert(key.to_string(), v);
                }
                if let Some(Some(e)) = exts.pop() {
                    map.insert(format!("_{key}"), Value::Object(e));
                }
            }
        } else {
            let mut nodes: Vec<Value> = items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Node(v) => Some(v),
                    Item::Prim { .. } => None,
                })
                .collect();
            if elem.is_array() {
                map.insert(key.to_string(), Value::Array(nodes));
            } else if let Some(v) = nodes.pop() {
                map.insert(key.to_string(), v);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON → XML

struct XmlOut {
    s: &'static Schema,
}

impl XmlOut {
    fn resource(
        &self,
        out: &mut String,
        obj: &Map<String, Value>,
        root: bool,
    ) -> Result<(), String> {
        let rt = obj
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or("a resource needs a string resourceType")?;
        let sid = self
            .s
            .type_scope(rt)
            .filter(|&id| {
                let sc = self.s.scope(id);
                sc.is_resource_root && !sc.owner.is_abstract
            })
            .ok_or_else(|| format!("unknown resource type '{rt}'"))?;
        out.push('<');
        out.push_str(rt);
        if root {
            out.push_str(" xmlns=\"");
            out.push_str(FHIR_NS);
            out.push('"');
        }
        out.push('>');
        self.children(out, obj, sid, rt)?;
        out.push_str("</");
        out.push_str(rt);
        out.push('>');
        Ok(())
    }

    /// Write the elements of `obj` (defined by scope `sid`) in definition order.
    fn children(
        &self,
        out: &mut String,
        obj: &Map<String, Value>,
        sid: ScopeId,
        path: &str,
    ) -> Result<(), String> {
        let scope = self.s.scope(sid);
        // Place every property: (element index, type index, JSON key), then write them in
        // definition order.
        let mut entries: Vec<(usize, usize, &str)> = Vec::with_capacity(obj.len());
        for key in obj.keys() {
            if key == "resourceType" && scope.is_resource_root {
                continue;
            }
            let (is_ext, name) = match key.strip_prefix('_') {
                Some(n) => (true, n),
                None => (false, key.as_str()),
            };
            let Some((ei, ti)) = scope.lookup(name) else {
                return Err(format!("unknown element '{key}' in {path}"));
            };
            if is_ext {
                if !matches!(scope.elements[ei].types[ti].kind, Kind::Primitive(_)) {
                    return Err(format!("unknown element '{key}' in {path}"));
                }
                if obj.contains_key(name) {
                    continue; // written with the value
                }
            }
            entries.push((ei, ti, name));
        }
        entries.sort_by_key(|e| e.0);
        let attrs = attribute_elements(scope);
        for (i, &(ei, ti, key)) in entries.iter().enumerate() {
            let elem = &scope.elements[ei];
            if attrs.contains(&elem.name) {
                continue;
            }
            if i > 0 && entries[i - 1].0 == ei {
                return Err(format!(
                    "{path}: only one type of {}[x] is allowed ({} and {key})",
                    elem.name,
                    entries[i - 1].2
                ));
            }
            let value = obj.get(key);
            let ext = sibling_ext(obj, key);
            self.element(out, elem, &elem.types[ti], key, value, ext, path)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn element(
        &self,
        out: &mut String,
        elem: &Elem,
        ety: &ElemType,
        key: &str,
        value: Option<&Value>,
        ext: Option<&Value>,
        path: &str,
    ) -> Result<(), String> {
        let here = format!("{path}.{key}");
        match ety.kind {
            Kind::Primitive(Prim::Xhtml) => {
                let Some(Value::String(div)) = value else {
                    return Err(format!("{here} must be a string of XHTML"));
                };
                let t = div.trim();
                if !t.starts_with("<div") {
                    return Err(format!("{here} must be an XHTML <div> element"));
                }
                out.push_str(&xhtml_with_namespace(t));
            }
            Kind::Primitive(_) => {
                if elem.is_array() {
                    let values = match value {
                        None => None,
                        Some(Value::Array(a)) => Some(a),
                        Some(_) => return Err(format!("{here} must be an array")),
                    };
                    let exts = match ext {
                        None => None,
                        Some(Value::Array(a)) => Some(a),
                        Some(_) => return Err(format!("_{key} in {path} must be an array")),
                    };
                    let n = values
                        .map(Vec::len)
                        .unwrap_or(0)
                        .max(exts.map(Vec::len).unwrap_or(0));
                    for i in 0..n {
                        let v = values.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                        let e = exts.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                        self.primitive(out, key, v, e, &here)?;
                    }
                } else {
                    self.primitive(out, key, value, ext, &here)?;
                }
            }
            Kind::Complex(csid) => match value {
                Some(Value::Array(items)) if elem.is_array() => {
                    for item in items {
                        self.complex(out, key, item, csid, &here)?;
                    }
                }
                Some(Value::Array(_)) => return Err(format!("{here} must not be an array")),
                Some(_) if elem.is_array() => return Err(format!("{here} must be an array")),
                Some(item) => self.complex(out, key, item, csid, &here)?,
                None => {}
            },
            Kind::Resource => {
                let items: &[Value] = match value {
                    Some(Value::Array(items)) if elem.is_array() => items,
                    Some(Value::Array(_)) => return Err(format!("{here} must not be an array")),
                    Some(_) if elem.is_array() => return Err(format!("{here} must be an array")),
                    Some(v) => std::slice::from_ref(v),
                    None => &[],
                };
                for item in items {
                    let Value::Object(res) = item else {
                        return Err(format!("{here} must hold a resource object"));
                    };
                    open_tag(out, key);
                    out.push('>');
                    self.resource(out, res, false)?;
                    close_tag(out, key);
                }
            }
        }
        Ok(())
    }

    fn primitive(
        &self,
        out: &mut String,
        key: &str,
        value: Option<&Value>,
        ext: Option<&Value>,
        here: &str,
    ) -> Result<(), String> {
        let ext = match ext {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(format!("{here}: the '_' sibling must be an object")),
        };
        open_tag(out, key);
        if let Some(m) = ext {
            for k in m.keys() {
                if k != "id" && k != "extension" {
                    return Err(format!("{here}: unexpected '{k}' in the '_' sibling"));
                }
            }
            if let Some(id) = m.get("id") {
                let Value::String(id) = id else {
                    return Err(format!("{here}: id must be a string"));
                };
                push_attr(out, "id", id);
            }
        }
        if let Some(v) = value {
            let text: &str = match v {
                Value::String(s) => s,
                Value::Bool(true) => "true",
                Value::Bool(false) => "false",
                Value::Number(n) => n.as_str(),
                _ => {
                    return Err(format!(
                        "{here}: a primitive value must be a string, number or boolean"
                    ));
                }
            };
            push_attr(out, "value", text);
        }
        match ext.and_then(|m| m.get("extension")) {
            Some(exts) => {
                out.push('>');
                let ext_sid = self
                    .s
                    .type_scope("Extension")
                    .expect("Extension is in the tables");
                let Value::Array(list) = exts else {
                    return Err(format!("{here}: extension must be an array"));
                };
                for e in list {
                    self.complex(out, "extension", e, ext_sid, here)?;
                }
                close_tag(out, key);
            }
            None => out.push_str("/>"),
        }
        Ok(())
    }

    fn complex(
        &self,
        out: &mut String,
        key: &str,
        item: &Value,
        sid: ScopeId,
        here: &str,
    ) -> Result<(), String> {
        let Value::Object(obj) = item else {
            return Err(format!("{here} must be a JSON object"));
        };
        let scope = self.s.scope(sid);
        open_tag(out, key);
        for name in attribute_elements(scope) {
            if let Some(v) = obj.get(*name) {
                let Value::String(s) = v else {
                    return Err(format!("{here}.{name} must be a string"));
                };
                push_attr(out, name, s);
            }
        }
        out.push('>');
        let mark = out.len();
        self.children(out, obj, sid, here)?;
        if out.len() == mark {
            out.pop();
            out.push_str("/>");
        } else {
            close_tag(out, key);
        }
        Ok(())
    }
}

/// Elements written as XML attributes in this scope: `Element.id` (not a resource's id) and
/// `Extension.url`.
fn attribute_elements(scope: &Scope) -> &'static [&'static str] {
    if scope.is_resource_root {
        &[]
    } else if is_extension_scope(scope) {
        &["id", "url"]
    } else {
        &["id"]
    }
}

fn open_tag(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
}

fn close_tag(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// ` name="value"` with the value escaped; tabs and line breaks as character references so
/// that attribute-value normalization keeps them.
fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\t' => out.push_str("&#x9;"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn primitives_arrays_and_extensions() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <!-- a comment -->
  <id value="p1"/>
  <extension url="http://example.org/ext">
    <valueDecimal value="1.50"/>
  </extension>
  <active value="true"/>
  <name id="n1">
    <family value="Chalmers &amp; Sons"/>
    <given value="Peter"/>
    <given id="g2">
      <extension url="http://example.org/initial"><valueBoolean value="false"/></extension>
    </given>
    <given value="James"/>
  </name>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
</Patient>"#;
        let v = xml_to_json(xml).unwrap();
        let expected: Value = serde_json::from_str(
            r#"{"resourceType":"Patient","id":"p1",
            "extension":[{"url":"http://example.org/ext","valueDecimal":1.50}],
            "active":true,
            "name":[{"id":"n1","family":"Chalmers & Sons","given":["Peter",null,"James"],
                "_given":[null,{"id":"g2","extension":[{"url":"http://example.org/initial","valueBoolean":false}]},null]}],
            "birthDate":"1974-12-25",
            "_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime":"1974-12-25T14:35:45-05:00"}]},
            "multipleBirthInteger":2}"#,
        )
        .unwrap();
        assert_eq!(v, expected);
        assert_eq!(
            serde_json::to_string(&v["extension"][0]["valueDecimal"]).unwrap(),
            "1.50"
        );
        let back = json_to_xml(&v).unwrap();
        assert_eq!(xml_to_json(&back).unwrap(), v);
    }

    #[test]
    fn narrative_contained_and_bundles() {
        let xml = r##"<Bundle xmlns="http://hl7.org/fhir">
  <type value="collection"/>
  <entry>
    <fullUrl value="urn:uuid:c757873d-ec9a-4326-a141-556f43239520"/>
    <resource>
      <Observation>
        <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>a &amp; <b>b</b></p></div></text>
        <contained><Patient><id value="p"/></Patient></contained>
        <status value="final"/>
        <code><text value="x"/></code>
        <subject><reference value="#p"/></subject>
      </Observation>
    </resource>
  </entry>
</Bundle>"##;
        let v = xml_to_json(xml).unwrap();
        let obs = &v["entry"][0]["resource"];
        assert_eq!(obs["resourceType"], "Observation");
        assert_eq!(
            obs["text"]["div"],
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &amp; <b>b</b></p></div>"
        );
        assert_eq!(
            obs["contained"][0],
            json!({"resourceType": "Patient", "id": "p"})
        );
        assert!(crate::validate::validate_resource(&v, &Default::default()).is_empty());
        let back = json_to_xml(&v).unwrap();
        assert_eq!(xml_to_json(&back).unwrap(), v);
    }

    #[test]
    fn json_to_xml_orders_by_definition_and_escapes() {
        let v = json!({"resourceType": "Patient", "birthDate": "1970-01-01",
            "name": [{"family": "a\"<b>\n"}], "id": "x",
            "extension": [{"valueString": "v", "url": "http://e.org"}]});
        let xml = json_to_xml(&v).unwrap();
        assert_eq!(
            xml,
            "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"x\"/>\
             <extension url=\"http://e.org\"><valueString value=\"v\"/></extension>\
             <name><family value=\"a&quot;&lt;b&gt;&#xA;\"/></name>\
             <birthDate value=\"1970-01-01\"/></Patient>"
        );
        assert_eq!(xml_to_json(&xml).unwrap(), v);
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let n = 100_000;
        let xml = format!(
            "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
            "<extension url=\"http://x\">".repeat(n),
            "</extension>".repeat(n)
        );
        let err = xml_to_json(&xml).unwrap_err();
        assert!(err.contains("nested"), "{err}");
    }

    #[test]
    fn errors_are_reported() {
        assert!(xml_to_json("<Patient><id value=\"x\"/></Patient>").is_err()); // no namespace
        assert!(xml_to_json("<Foo xmlns=\"http://hl7.org/fhir\"/>").is_err());
        assert!(
            xml_to_json("<Patient xmlns=\"http://hl7.org/fhir\"><foo value=\"x\"/></Patient>")
                .is_err()
        );
        assert!(
            xml_to_json("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>")
                .is_err()
        );
        assert!(
            xml_to_json(
                "<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"male\"/><gender value=\"female\"/></Patient>"
            )
            .is_err()
        );
        assert!(
            xml_to_json("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"x\"></Patient>")
                .is_err()
        );
        assert!(json_to_xml(&json!({"resourceType": "Patient", "foo": 1})).is_err());
        assert!(json_to_xml(&json!({"resourceType": "Patient", "name": {"family": "x"}})).is_err());
        assert!(json_to_xml(&json!({"resourceType": "Nope"})).is_err());
    }
}
