//! OperationOutcome issues: the one way problems are described in issho.

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (value set issue-type), the subset issho reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    Exception,
    Timeout,
    /// Too many requests (rate limit).
    Throttled,
    Informational,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// One problem (or note) about a request or a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// Human-readable explanation: what is wrong and, where it helps, how to fix it.
    pub diagnostics: String,
    /// FHIRPath location of the problem inside the resource, e.g. `Patient.name[0].given[1]`.
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    pub fn information(diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity <= Severity::Error
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "severity": self.severity.code(),
            "code": self.code.code(),
            "diagnostics": self.diagnostics,
        });
        if let Some(e) = &self.expression {
            v["expression"] = json!([e]);
        }
        v
    }
}

/// Build an OperationOutcome resource from issues. An empty list yields one informational issue
/// (an OperationOutcome must have at least one issue).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let list: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": list})
}
