//! The access gate.
//!
//! Every interaction the engine performs carries an [`AccessContext`] (who is asking, on whose
//! behalf, for which patient, and why) and is checked by [`Gate::check`] before the store is
//! touched. Today the only principal is the explicit development mode (`--dev-open`), or
//! internal system jobs (demo loading, import); SMART on FHIR tokens, consent and audit arrive
//! with the access issue and plug into this one place.
//!
//! Architecture invariant: the engine cannot reach the store without a `Permit` issued here.

use issho_model::{Issue, IssueType};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `serve --dev-open`: no authentication, everything allowed. Local development only.
    DevOpen,
    /// The server itself (import, demo generation) acting for an operator at the console.
    System { operator: String },
    /// Nobody authenticated.
    Anonymous,
}

/// Why the data is being accessed (HL7 v3 PurposeOfUse codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Treatment,
    EmergencyTreatment,
    Operations,
    Research,
    PatientRequest,
}

#[derive(Debug, Clone)]
pub struct AccessContext {
    pub principal: Principal,
    pub purpose: Purpose,
}

impl AccessContext {
    pub fn dev_open() -> Self {
        AccessContext {
            principal: Principal::DevOpen,
            purpose: Purpose::Operations,
        }
    }
    pub fn system(operator: &str) -> Self {
        AccessContext {
            principal: Principal::System {
                operator: operator.into(),
            },
            purpose: Purpose::Operations,
        }
    }
    pub fn anonymous() -> Self {
        AccessContext {
            principal: Principal::Anonymous,
            purpose: Purpose::Treatment,
        }
    }
}

/// What is being attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
    Delete,
    History,
    Operation,
    Capabilities,
    /// Administrative insight into the server itself (query plans, reindexing).
    Admin,
}

impl Action {
    fn is_write(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// Proof that the gate allowed an action; the engine asks for one before each store call.
#[derive(Debug)]
pub struct Permit {
    pub action: Action,
}

/// A denial: HTTP status and the OperationOutcome issue.
#[derive(Debug, Clone)]
pub struct Denied {
    pub status: u16,
    pub issue: Issue,
}

/// The one access gate.
#[derive(Debug, Clone, Default)]
pub struct Gate {}

impl Gate {
    pub fn new() -> Gate {
        Gate {}
    }

    /// Decide whether `ctx` may perform `action` on `resource_type` (None = system level).
    pub fn check(
        &self,
        ctx: &AccessContext,
        action: Action,
        resource_type: Option<&str>,
    ) -> Result<Permit, Denied> {
        match &ctx.principal {
            Principal::DevOpen | Principal::System { .. } => Ok(Permit { action }),
            Principal::Anonymous if action == Action::Capabilities => Ok(Permit { action }),
            Principal::Anonymous => Err(Denied {
                status: 401,
                issue: Issue::error(
                    IssueType::Login,
                    format!(
                        "authentication required to {} {}",
                        if action.is_write() { "write" } else { "read" },
                        resource_type.unwrap_or("resources")
                    ),
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_may_only_read_capabilities() {
        let g = Gate::new();
        let anon = AccessContext::anonymous();
        assert!(g.check(&anon, Action::Capabilities, None).is_ok());
        let d = g.check(&anon, Action::Read, Some("Patient")).unwrap_err();
        assert_eq!(d.status, 401);
        assert!(
            g.check(&AccessContext::dev_open(), Action::Delete, Some("Patient"))
                .is_ok()
        );
    }
}
