//! The access gate.
//!
//! Every interaction the engine performs carries an [`AccessContext`] (who is asking, on whose
//! behalf, for which patient, and why) and is checked by [`Gate::check`] before the store is
//! touched. The answer is a [`Permit`] that says how far the caller reaches ([`Reach`]: all
//! data, one patient's compartment, the patients in a care relationship with an
//! organization) and which search conditions every resource must meet (SMART scopes with a
//! query); the engine applies both to every read, search, include, history entry, operation
//! and write.
//!
//! Principals: SMART tokens ([`Grant`], from issho-auth), the explicit development mode
//! (`--dev-open`), internal system jobs (demo loading, import) and anonymous callers.
//!
//! Architecture invariant: the engine cannot reach the store without a `Permit` issued here.

mod scope;

pub use scope::{Permission, ResourceScope, ScopeContext, Scopes};

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
    /// A verified access token.
    Token(Box<Grant>),
}

/// What a person or client is, for access decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A person looking at their own record (bound to a Patient resource).
    Patient,
    Physician,
    Nurse,
    Pharmacist,
    /// May open a restricted record in an emergency (break-the-glass).
    EmergencyPhysician,
    PublicHealthOfficer,
    Researcher,
    Administrator,
    /// Keeps the register of persons: reads and searches Patients, Persons and shared data
    /// (never clinical data), matches and links Patients into persons.
    Registrar,
    /// A backend service (SMART Backend Services, client credentials).
    Service,
}

impl Role {
    pub fn code(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Pharmacist => "pharmacist",
            Role::EmergencyPhysician => "emergency-physician",
            Role::PublicHealthOfficer => "public-health",
            Role::Researcher => "researcher",
            Role::Administrator => "administrator",
            Role::Registrar => "registrar",
            Role::Service => "service",
        }
    }
    pub fn from_code(s: &str) -> Option<Role> {
        Some(match s {
            "patient" => Role::Patient,
            "physician" => Role::Physician,
            "nurse" => Role::Nurse,
            "pharmacist" => Role::Pharmacist,
            "emergency-physician" => Role::EmergencyPhysician,
            "public-health" => Role::PublicHealthOfficer,
            "researcher" => Role::Researcher,
            "administrator" => Role::Administrator,
            "registrar" => Role::Registrar,
            "service" => Role::Service,
            _ => return None,
        })
    }
    /// Care providers, who see records through care relationships.
    pub fn is_clinician(self) -> bool {
        matches!(
            self,
            Role::Physician | Role::Nurse | Role::Pharmacist | Role::EmergencyPhysician
        )
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user name or client id (`sub`).
    pub subject: String,
    pub role: Role,
    /// The patient in context (`patient` of the token response): for a patient user, their
    /// own Patient id.
    pub patient: Option<String>,
    /// The organization a practitioner acts for (`Organization/id`).
    pub organization: Option<String>,
    /// The user's own FHIR resource (`Practitioner/id`, `Patient/id`): `fhirUser`.
    pub fhir_user: Option<String>,
    pub scopes: Scopes,
    /// Token id (`jti`), for audit and revocation.
    pub token_id: String,
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
    pub fn token(grant: Grant) -> Self {
        let purpose = match grant.role {
            Role::Patient => Purpose::PatientRequest,
            Role::Researcher => Purpose::Research,
            Role::Administrator | Role::Service | Role::PublicHealthOfficer | Role::Registrar => {
                Purpose::Operations
            }
            _ => Purpose::Treatment,
        };
        AccessContext {
            principal: Principal::Token(Box::new(grant)),
            purpose,
        }
    }
    /// The grant, when the caller presented a token.
    pub fn grant(&self) -> Option<&Grant> {
        match &self.principal {
            Principal::Token(g) => Some(g),
            _ => None,
        }
    }
    /// The identity result sets and paging links are bound to: the principal and, for a
    /// token, its id (a new token starts new result sets).
    pub fn owner(&self) -> String {
        match &self.principal {
            Principal::Token(g) => format!("{}#{}", g.subject, g.token_id),
            _ => self.who(),
        }
    }

    /// Who is asking, for logs and audit (`dev-open`, `system:import`, `anonymous`, the
    /// token's subject).
    pub fn who(&self) -> String {
        match &self.principal {
            Principal::DevOpen => "dev-open".into(),
            Principal::System { operator } => format!("system:{operator}"),
            Principal::Anonymous => "anonymous".into(),
            Principal::Token(g) => g.subject.clone(),
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
    /// Bulk export (and view runs) of a type's resources: a search whose results leave in
    /// bulk. The only action open to research projects' members, whose permits reach the
    /// consenting persons' de-identified data ([`Reach::Research`]).
    Export,
}

impl Action {
    fn is_write(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
    /// The SMART permission an action needs (`None`: not governed by resource scopes).
    fn permission(self) -> Option<Permission> {
        Some(match self {
            Action::Read | Action::History | Action::Operation => Permission::Read,
            Action::Search | Action::Export => Permission::Search,
            Action::Create => Permission::Create,
            Action::Update => Permission::Update,
            Action::Delete => Permission::Delete,
            Action::Capabilities | Action::Admin => return None,
        })
    }
}

/// How much of the data a permit reaches. Ordered from narrow to wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Resources in the compartment of this Patient (and the Patient itself); resources of
    /// types outside the patient compartment (Practitioner, Medication…) are not patient data
    /// and may be read.
    Patient(String),
    /// The records of the patients in a care relationship with this organization (an
    /// Encounter or EpisodeOfCare there, or a referral to it), as their consent allows.
    CareOf(String),
    /// The persons whose research consent allows it, de-identified by this research
    /// project's profile (`issho-research`): granted only for [`Action::Export`], to the
    /// project's members, whatever scope they hold.
    Research(String),
    /// Everything.
    All,
}

/// Proof that the gate allowed an action, and its limits. Only [`Gate::check`] makes one (the
/// fields are private and there is no other constructor), and the store takes one for every
/// snapshot and every write job: the engine cannot reach the data without asking the gate.
/// The engine applies `reach` and `filters` to what it returns or writes.
///
/// Nothing outside this crate can make one:
/// ```compile_fail
/// let forged = issho_access::Permit {
///     action: issho_access::Action::Read,
///     reach: issho_access::Reach::All,
///     filters: Vec::new(),
/// };
/// ```
#[derive(Debug, Clone)]
pub struct Permit {
    action: Action,
    reach: Reach,
    /// Search conditions every resource must meet (from a scope such as
    /// `patient/Observation.rs?category=laboratory`).
    filters: Vec<(String, String)>,
}

impl Permit {
    /// What was allowed.
    pub fn action(&self) -> Action {
        self.action
    }
    /// How far the caller reaches.
    pub fn reach(&self) -> &Reach {
        &self.reach
    }
    /// Search conditions every resource must meet.
    pub fn filters(&self) -> &[(String, String)] {
        &self.filters
    }
    /// True when it allows changing data (create, update, delete, administration): what a
    /// store write job needs.
    pub fn allows_writing(&self) -> bool {
        matches!(
            self.action,
            Action::Create | Action::Update | Action::Delete | Action::Admin
        )
    }
    fn all(action: Action) -> Permit {
        Permit {
            action,
            reach: Reach::All,
            filters: Vec::new(),
        }
    }
    /// True when nothing is held back.
    pub fn is_unrestricted(&self) -> bool {
        self.reach == Reach::All && self.filters.is_empty()
    }
}

/// A denial: HTTP status and the OperationOutcome issue.
#[derive(Debug, Clone)]
pub struct Denied {
    pub status: u16,
    pub issue: Issue,
}

/// The one access gate.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// Members of research projects (user names and backend services' client ids) → the
    /// project.
    research: std::sync::Arc<std::collections::HashMap<String, String>>,
    /// Former members of research projects (no member of any now): refused everything.
    former: std::sync::Arc<std::collections::HashSet<String>>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// A gate that knows the deployment's research projects: their members (researchers and
    /// research backend services) get de-identified exports of consenting persons and
    /// nothing else, whatever their scopes.
    pub fn with_research(
        members: std::collections::HashMap<String, String>,
        former: std::collections::HashSet<String>,
    ) -> Gate {
        Gate {
            research: std::sync::Arc::new(members),
            former: std::sync::Arc::new(former),
        }
    }

    /// Whether `ctx` is a former member of a research project (and no member now).
    fn is_former_member(&self, ctx: &AccessContext) -> bool {
        ctx.grant().is_some_and(|g| {
            matches!(g.role, Role::Researcher | Role::Service) && self.former.contains(&g.subject)
        })
    }

    /// The research project `ctx` works for, if any.
    pub fn project_of(&self, ctx: &AccessContext) -> Option<&str> {
        let g = ctx.grant()?;
        if !matches!(g.role, Role::Researcher | Role::Service) {
            return None;
        }
        self.research.get(&g.subject).map(String::as_str)
    }

    /// Decide whether `ctx` may perform `action` on `resource_type` (None = system level).
    pub fn check(
        &self,
        ctx: &AccessContext,
        action: Action,
        resource_type: Option<&str>,
    ) -> Result<Permit, Denied> {
        match &ctx.principal {
            Principal::DevOpen | Principal::System { .. } => Ok(Permit::all(action)),
            _ if action == Action::Capabilities => Ok(Permit::all(action)),
            Principal::Token(_) if self.is_former_member(ctx) => Err(forbidden(
                "this client or user worked for a research project and no longer does: it gets nothing (register it again under a new id for other work)",
            )),
            Principal::Token(_) if self.project_of(ctx).is_some() => {
                let project = self.project_of(ctx).expect("checked").to_string();
                let Principal::Token(g) = &ctx.principal else {
                    unreachable!("a project member holds a token")
                };
                check_research(g, project, action, resource_type)
            }
            Principal::Token(g) => check_grant(g, action, resource_type),
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

/// A scope's search restriction (name/value pairs).
type Query = Vec<(String, String)>;

fn forbidden(msg: impl Into<String>) -> Denied {
    Denied {
        status: 403,
        issue: Issue::error(IssueType::Forbidden, msg),
    }
}

/// The decision for a token: the scopes that cover the type and permission, each with the
/// reach its context gives this grant; the widest wins.
fn check_grant(g: &Grant, action: Action, resource_type: Option<&str>) -> Result<Permit, Denied> {
    if action == Action::Admin {
        return if g.role == Role::Administrator {
            Ok(Permit::all(action))
        } else {
            Err(forbidden("this needs an administrator"))
        };
    }
    let Some(perm) = action.permission() else {
        return Ok(Permit::all(action));
    };
    let t = resource_type.unwrap_or("*");
    // A registrar works on the register of persons: Patients, Persons and shared data, never
    // on clinical data.
    if g.role == Role::Registrar
        && !(t == "Patient"
            || t == "Person"
            || (t != "*" && !issho_model::r4().may_hold_patient_data(t)))
    {
        return Err(forbidden(format!(
            "a registrar works with Patients, Persons and shared data, not {}",
            resource_type.unwrap_or("all types")
        )));
    }
    // The widest reach found, with the queries of the scopes that give it.
    let mut best: Option<(Reach, Vec<Query>)> = None;
    for s in g.scopes.resources.iter().filter(|s| s.allows(perm)) {
        // A system-level interaction needs a wildcard scope.
        let covers = if resource_type.is_some() {
            s.covers(t)
        } else {
            s.resource_type == "*"
        };
        if !covers {
            continue;
        }
        let Some(reach) = reach_of(g, s.context) else {
            continue;
        };
        match &mut best {
            Some((r, qs)) if *r == reach => qs.push(s.query.clone()),
            Some((r, _)) if wider(r, &reach) => {}
            _ => best = Some((reach, vec![s.query.clone()])),
        }
    }
    let Some((reach, queries)) = best else {
        return Err(forbidden(format!(
            "the token's scopes do not permit {} on {}",
            perm_name(perm),
            resource_type.unwrap_or("all types")
        )));
    };
    // A scope without a query grants the whole reach; several different queries would be an
    // OR of conditions, which issho does not combine.
    let filters = if queries.iter().any(Vec::is_empty) {
        Vec::new()
    } else {
        let first = queries[0].clone();
        if queries.iter().any(|q| *q != first) {
            return Err(forbidden(
                "several scopes with different search restrictions apply; request one",
            ));
        }
        first
    };
    Ok(Permit {
        action,
        reach,
        filters,
    })
}

/// A research project's member: exports of the types its scopes cover (system or user
/// scopes), reaching the project's consenting persons de-identified; nothing else.
fn check_research(
    g: &Grant,
    project: String,
    action: Action,
    resource_type: Option<&str>,
) -> Result<Permit, Denied> {
    if resource_type == Some("ViewDefinition")
        && matches!(
            action,
            Action::Read
                | Action::Search
                | Action::History
                | Action::Create
                | Action::Update
                | Action::Delete
        )
    {
        return check_views(g, action);
    }
    if action != Action::Export {
        return Err(forbidden(format!(
            "a member of the research project '{project}' receives de-identified exports ($export) and keeps views (ViewDefinition) only, not individual records"
        )));
    }
    let t = resource_type.unwrap_or("*");
    let covered = g.scopes.resources.iter().any(|s| {
        s.allows(Permission::Search)
            && s.query.is_empty()
            && matches!(s.context, ScopeContext::System | ScopeContext::User)
            && if resource_type.is_some() {
                s.covers(t)
            } else {
                s.resource_type == "*"
            }
    });
    if !covered {
        return Err(forbidden(format!(
            "the token's scopes do not permit exporting {}",
            resource_type.unwrap_or("all types")
        )));
    }
    Ok(Permit {
        action,
        reach: Reach::Research(project),
        filters: Vec::new(),
    })
}

/// A research project's member and the views it keeps (SQL on FHIR ViewDefinitions:
/// definitions, never a person's data, as the tables say): what its system or user scopes for
/// ViewDefinition allow, over all of them.
fn check_views(g: &Grant, action: Action) -> Result<Permit, Denied> {
    debug_assert!(!issho_model::r4().may_hold_patient_data("ViewDefinition"));
    let perm = action.permission().expect("a resource action");
    let covered = g.scopes.resources.iter().any(|s| {
        s.allows(perm)
            && s.query.is_empty()
            && matches!(s.context, ScopeContext::System | ScopeContext::User)
            && s.covers("ViewDefinition")
    });
    if !covered {
        return Err(forbidden(format!(
            "the token's scopes do not permit {} on ViewDefinition",
            perm_name(perm)
        )));
    }
    Ok(Permit::all(action))
}

fn perm_name(perm: Permission) -> &'static str {
    match perm {
        Permission::Create => "create",
        Permission::Read => "read",
        Permission::Update => "update",
        Permission::Delete => "delete",
        Permission::Search => "search",
    }
}

/// What a scope context reaches for this grant (`None`: nothing).
fn reach_of(g: &Grant, ctx: ScopeContext) -> Option<Reach> {
    match ctx {
        ScopeContext::Patient => g.patient.clone().map(Reach::Patient),
        ScopeContext::System => (g.role == Role::Service).then_some(Reach::All),
        ScopeContext::User => match g.role {
            Role::Patient => g.patient.clone().map(Reach::Patient),
            r if r.is_clinician() => g.organization.clone().map(Reach::CareOf),
            Role::Administrator | Role::Registrar => Some(Reach::All),
            // Researchers and public-health officers work with exports made for them, not
            // with individual records.
            _ => None,
        },
    }
}

fn wider(a: &Reach, b: &Reach) -> bool {
    let rank = |r: &Reach| match r {
        Reach::Research(_) => 0,
        Reach::Patient(_) => 0,
        Reach::CareOf(_) => 1,
        Reach::All => 2,
    };
    rank(a) > rank(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, scopes: &str) -> AccessContext {
        AccessContext::token(Grant {
            subject: "u".into(),
            role,
            patient: (role == Role::Patient).then(|| "p1".to_string()),
            organization: role.is_clinician().then(|| "Organization/h1".to_string()),
            fhir_user: None,
            scopes: Scopes::parse(scopes).unwrap(),
            token_id: "t".into(),
        })
    }

    #[test]
    fn a_research_projects_members_get_exports_only_whatever_their_scopes() {
        let gate = Gate::with_research(
            [("u".to_string(), "study".to_string())]
                .into_iter()
                .collect(),
            Default::default(),
        );
        let svc = grant(Role::Service, "system/*.cruds");
        let p = gate
            .check(&svc, Action::Export, Some("Observation"))
            .unwrap();
        assert_eq!(*p.reach(), Reach::Research("study".into()));
        assert!(!p.allows_writing());
        for a in [
            Action::Read,
            Action::Search,
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::History,
            Action::Operation,
            Action::Admin,
        ] {
            assert_eq!(
                gate.check(&svc, a, Some("Observation")).unwrap_err().status,
                403,
                "{a:?}"
            );
        }
        // The views it keeps: ViewDefinitions as its scopes allow, and nothing else by them.
        let p = gate
            .check(&svc, Action::Create, Some("ViewDefinition"))
            .unwrap();
        assert!(p.allows_writing());
        for a in [Action::Read, Action::Search, Action::Update, Action::Delete] {
            assert!(gate.check(&svc, a, Some("ViewDefinition")).is_ok(), "{a:?}");
        }
        assert!(gate.check(&svc, Action::Search, None).is_err());
        assert!(
            gate.check(&svc, Action::Operation, Some("ViewDefinition"))
                .is_err()
        );
        let reader = grant(
            Role::Researcher,
            "user/ViewDefinition.rs user/Observation.rs",
        );
        assert!(
            gate.check(&reader, Action::Read, Some("ViewDefinition"))
                .is_ok()
        );
        assert_eq!(
            gate.check(&reader, Action::Create, Some("ViewDefinition"))
                .unwrap_err()
                .status,
            403
        );
        let researcher = grant(Role::Researcher, "user/Observation.rs");
        assert!(
            gate.check(&researcher, Action::Read, Some("ViewDefinition"))
                .is_err()
        );
        assert!(
            gate.check(&researcher, Action::Export, Some("Observation"))
                .is_ok()
        );
        assert!(
            gate.check(&researcher, Action::Export, Some("Patient"))
                .is_err()
        );
        assert!(gate.check(&researcher, Action::Export, None).is_err());
        // Not a member: the ordinary rules (a researcher reaches nothing, a service all).
        let outsider = Gate::new();
        assert!(
            outsider
                .check(&researcher, Action::Export, Some("Observation"))
                .is_err()
        );
        assert_eq!(
            *outsider
                .check(&svc, Action::Export, Some("Observation"))
                .unwrap()
                .reach(),
            Reach::All
        );
        // A former member (a service taken off its project) gets nothing, not its scopes.
        let former =
            Gate::with_research(Default::default(), ["u".to_string()].into_iter().collect());
        assert_eq!(
            former
                .check(&svc, Action::Search, Some("Observation"))
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            former.check(&svc, Action::Export, None).unwrap_err().status,
            403
        );
        // A patient or clinician named like a member is not one.
        let patient = grant(Role::Patient, "patient/*.rs");
        assert_eq!(
            *gate
                .check(&patient, Action::Export, Some("Observation"))
                .unwrap()
                .reach(),
            Reach::Patient("p1".into())
        );
    }

    #[test]
    fn a_registrar_keeps_the_register_not_the_records() {
        let gate = Gate::new();
        let r = grant(Role::Registrar, "user/*.cruds");
        for t in ["Patient", "Person", "Organization", "Practitioner"] {
            let p = gate.check(&r, Action::Read, Some(t)).unwrap();
            assert_eq!(*p.reach(), Reach::All, "{t}");
        }
        assert!(gate.check(&r, Action::Update, Some("Patient")).is_ok());
        for t in [
            "Observation",
            "Condition",
            "Bundle",
            "Communication",
            "Task",
        ] {
            assert_eq!(
                gate.check(&r, Action::Read, Some(t)).unwrap_err().status,
                403,
                "{t}"
            );
        }
        assert!(gate.check(&r, Action::Search, None).is_err());
        assert!(gate.check(&r, Action::Admin, None).is_err());
        assert_eq!(Role::from_code("registrar"), Some(Role::Registrar));
    }

    #[test]
    fn scopes_decide_and_reach_follows_the_context() {
        let g = Gate::new();
        let p = grant(Role::Patient, "patient/*.rs patient/Observation.c");
        let permit = g.check(&p, Action::Read, Some("Condition")).unwrap();
        assert_eq!(*permit.reach(), Reach::Patient("p1".into()));
        assert!(g.check(&p, Action::Create, Some("Observation")).is_ok());
        let d = g
            .check(&p, Action::Delete, Some("Observation"))
            .unwrap_err();
        assert_eq!(d.status, 403);
        assert!(g.check(&p, Action::Admin, None).is_err());
        // System-level search needs a wildcard scope.
        assert!(g.check(&p, Action::Search, None).is_ok());
        let narrow = grant(Role::Patient, "patient/Observation.rs");
        assert!(g.check(&narrow, Action::Search, None).is_err());
        // Query-restricted scopes become filters.
        let lab = grant(Role::Patient, "patient/Observation.rs?category=laboratory");
        let permit = g.check(&lab, Action::Search, Some("Observation")).unwrap();
        assert_eq!(
            permit.filters(),
            vec![("category".into(), "laboratory".into())]
        );
        assert!(g.check(&lab, Action::Search, Some("Condition")).is_err());
        // The widest applicable scope wins.
        let doc = grant(Role::Physician, "user/*.rs");
        let permit = g.check(&doc, Action::Search, Some("Observation")).unwrap();
        assert_eq!(*permit.reach(), Reach::CareOf("Organization/h1".into()));
        // System scopes only for backend services.
        let not_service = grant(Role::Physician, "system/*.rs");
        assert!(
            g.check(&not_service, Action::Read, Some("Patient"))
                .is_err()
        );
        let service = grant(Role::Service, "system/*.rs");
        assert_eq!(
            g.check(&service, Action::Read, Some("Patient"))
                .unwrap()
                .reach(),
            &Reach::All
        );
        // Researchers get no individual records through user scopes.
        let r = grant(Role::Researcher, "user/*.rs");
        assert!(g.check(&r, Action::Read, Some("Patient")).is_err());
        // Everyone may read the CapabilityStatement.
        assert!(g.check(&r, Action::Capabilities, None).is_ok());
    }

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
