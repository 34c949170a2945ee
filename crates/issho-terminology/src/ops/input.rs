//! The input of a terminology operation: its parameters (from a query string or a
//! Parameters resource), codings, and its failures.

use issho_model::{Issue, IssueType};
use serde_json::Value;

/// An operation's failure: the HTTP status and what went wrong.
#[derive(Debug, Clone)]
pub struct OpError {
    pub status: u16,
    pub issue: Issue,
}

pub(crate) type R<T> = Result<T, OpError>;

pub(crate) fn bad(msg: impl Into<String>) -> OpError {
    OpError {
        status: 400,
        issue: Issue::error(IssueType::Invalid, msg),
    }
}

pub(crate) fn not_found(msg: impl Into<String>) -> OpError {
    OpError {
        status: 404,
        issue: Issue::error(IssueType::NotFound, msg),
    }
}

impl From<Issue> for OpError {
    fn from(issue: Issue) -> OpError {
        let status = match issue.code {
            IssueType::NotFound => 404,
            IssueType::TooCostly => 422,
            _ => 400,
        };
        OpError { status, issue }
    }
}

/// A coding given to an operation.
#[derive(Debug, Clone, Default)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: String,
    pub display: Option<String>,
}

impl Coding {
    pub(crate) fn of(v: &Value) -> Option<Coding> {
        Some(Coding {
            system: v["system"].as_str().map(str::to_string),
            version: v["version"].as_str().map(str::to_string),
            code: v["code"].as_str()?.to_string(),
            display: v["display"].as_str().map(str::to_string),
        })
    }
}

/// An operation's parameters: from the query string of a GET, or a Parameters resource.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, Value)>);

impl Params {
    pub fn from_query(pairs: &[(String, String)]) -> Params {
        Params(
            pairs
                .iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// From a Parameters resource: each parameter's `value[x]` (or `resource`).
    pub fn from_parameters(p: &Value) -> R<Params> {
        if p["resourceType"].as_str() != Some("Parameters") {
            return Err(bad("the operation takes a Parameters resource"));
        }
        let mut out = Vec::new();
        for x in p["parameter"].as_array().into_iter().flatten() {
            let Some(name) = x["name"].as_str() else {
                return Err(bad("a parameter without a name"));
            };
            let v = x.get("resource").cloned().or_else(|| {
                x.as_object()?
                    .iter()
                    .find(|(k, _)| k.starts_with("value"))
                    .map(|(_, v)| v.clone())
            });
            if let Some(v) = v {
                out.push((name.to_string(), v));
            }
        }
        Ok(Params(out))
    }

    /// Adds `name` unless given (e.g. `displayLanguage` from `Accept-Language`).
    pub fn default(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.0
                .push((name.to_string(), Value::String(value.to_string())));
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn strs(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .filter_map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn bool(&self, name: &str) -> R<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(bad(format!("{name} must be true or false, not {other}"))),
        }
    }

    pub(crate) fn count(&self, name: &str) -> R<Option<usize>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                let n = match v {
                    Value::String(s) => s.parse::<usize>().ok(),
                    Value::Number(n) => n.as_u64().map(|n| n as usize),
                    _ => None,
                };
                n.map(Some)
                    .ok_or_else(|| bad(format!("{name} must be a whole number of 0 or more")))
            }
        }
    }

    /// A Coding: `name` as a Coding object, or (GET) `system|code`.
    pub(crate) fn coding(&self, name: &str) -> R<Option<Coding>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let (system, code) = match s.split_once('|') {
                    Some((sys, c)) => (Some(sys.to_string()), c.to_string()),
                    None => (None, s.clone()),
                };
                Ok(Some(Coding {
                    system,
                    code,
                    ..Default::default()
                }))
            }
            Some(v) => Coding::of(v)
                .map(Some)
                .ok_or_else(|| bad(format!("{name} must be a Coding with a code"))),
        }
    }

    pub(crate) fn codeable(&self, name: &str) -> R<Vec<Coding>> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(v) => {
                let c: Vec<Coding> = v["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Coding::of)
                    .collect();
                if c.is_empty() {
                    return Err(bad(format!(
                        "{name} must be a CodeableConcept with a coding"
                    )));
                }
                Ok(c)
            }
        }
    }

    pub(crate) fn resource(&self, name: &str) -> Option<&Value> {
        self.get(name)
            .filter(|v| v.is_object() && v["resourceType"].is_string())
    }

    pub(crate) fn lang(&self) -> Option<String> {
        self.str("displayLanguage").map(|l| {
            // `Accept-Language` style: the first tag, without a weight.
            l.split(',')
                .next()
                .unwrap_or(l)
                .split(';')
                .next()
                .unwrap_or(l)
                .trim()
                .to_string()
        })
    }
}
