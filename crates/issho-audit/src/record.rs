//! [`AuditRecord`]: what the engine knows about one access, in plain Rust. It is turned into a
//! FHIR AuditEvent by [`crate::to_audit_event`] on the log's writer thread, so filling one in
//! costs the request almost nothing.

/// `AuditEvent.action` (http://hl7.org/fhir/audit-event-action, a required binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// `C`: create.
    Create,
    /// `R`: read, view, print.
    Read,
    /// `U`: update.
    Update,
    /// `D`: delete.
    Delete,
    /// `E`: execute (searches, operations, transactions, logins).
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// `AuditEvent.outcome` (http://hl7.org/fhir/audit-event-outcome, a required binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// `0`: the action succeeded.
    Success,
    /// `4`: minor failure (the request was refused: bad request, not found, access denied).
    MinorFailure,
    /// `8`: serious failure (the action was ended prematurely).
    SeriousFailure,
    /// `12`: major failure (the server failed).
    MajorFailure,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
            Outcome::MajorFailure => "12",
        }
    }
}

/// What was done. The RESTful ones are the codes of http://hl7.org/fhir/restful-interaction;
/// the others are security events of the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Interaction {
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    Create,
    SearchType,
    SearchSystem,
    Capabilities,
    Transaction,
    Batch,
    Operation,
    /// A user or client authenticated.
    Login,
    Logout,
    /// A user declared an emergency ("break the glass") to reach a record they are not
    /// otherwise allowed to see. The accesses made under it are recorded with
    /// [`AuditRecord::break_glass`] set.
    BreakGlass,
}

impl Interaction {
    /// Every interaction, for tests and tools.
    pub const ALL: [Interaction; 18] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Update,
        Interaction::Patch,
        Interaction::Delete,
        Interaction::HistoryInstance,
        Interaction::HistoryType,
        Interaction::HistorySystem,
        Interaction::Create,
        Interaction::SearchType,
        Interaction::SearchSystem,
        Interaction::Capabilities,
        Interaction::Transaction,
        Interaction::Batch,
        Interaction::Operation,
        Interaction::Login,
        Interaction::Logout,
        Interaction::BreakGlass,
    ];

    /// The code: the restful-interaction code, or `login`, `logout`, `break-glass`.
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::Create => "create",
            Interaction::SearchType => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::Capabilities => "capabilities",
            Interaction::Transaction => "transaction",
            Interaction::Batch => "batch",
            Interaction::Operation => "operation",
            Interaction::Login => "login",
            Interaction::Logout => "logout",
            Interaction::BreakGlass => "break-glass",
        }
    }

    pub fn from_code(code: &str) -> Option<Interaction> {
        Interaction::ALL.into_iter().find(|i| i.code() == code)
    }

    /// True for the codes of http://hl7.org/fhir/restful-interaction.
    pub fn is_restful(self) -> bool {
        !matches!(
            self,
            Interaction::Login | Interaction::Logout | Interaction::BreakGlass
        )
    }

    /// The usual `AuditEvent.action`: reads are `R`; searches, like every query, operations,
    /// transactions and security events are `E` (execute); writes are `C`, `U`, `D`.
    pub fn default_action(self) -> Action {
        match self {
            Interaction::Read
            | Interaction::Vread
            | Interaction::HistoryInstance
            | Interaction::HistoryType
            | Interaction::HistorySystem
            | Interaction::Capabilities => Action::Read,
            Interaction::Create => Action::Create,
            Interaction::Update | Interaction::Patch => Action::Update,
            Interaction::Delete => Action::Delete,
            Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::Transaction
            | Interaction::Batch
            | Interaction::Operation
            | Interaction::Login
            | Interaction::Logout
            | Interaction::BreakGlass => Action::Execute,
        }
    }
}

/// Who acted: a person (user id) or a system (client id).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Agent {
    /// The user id or client id. A relative reference (`Practitioner/123`, `Patient/7`) is
    /// rendered as a reference, anything else as an identifier value. This is also the key of
    /// [`crate::AuditLog::search`] by agent.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Role: `system|code`, or plain text.
    pub role: Option<String>,
    /// True when this agent asked for the action (almost always).
    pub requestor: bool,
}

/// One access (or denial, or security event), as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When, in microseconds since the Unix epoch (`AuditEvent.recorded`).
    pub time: i64,
    pub action: Action,
    pub interaction: Interaction,
    pub outcome: Outcome,
    /// Why it failed or was denied (`AuditEvent.outcomeDesc`).
    pub reason: Option<String>,
    pub agent: Agent,
    /// The organization the agent acts for (`Organization/id`, or an identifier value).
    pub on_behalf_of: Option<String>,
    /// Purposes of use: codes of http://terminology.hl7.org/CodeSystem/v3-ActReason
    /// (`TREAT`, `ETREAT`, `PATRQT`, …) or `system|code`.
    pub purpose_of_use: Vec<String>,
    /// The patients whose data was concerned (`Patient/id`); a person's own access log is
    /// selected by these.
    pub patients: Vec<String>,
    /// The resources touched: `Type/id` or `Type/id/_history/vid`.
    pub entities: Vec<String>,
    /// For searches and operations: the request, e.g. `Observation?subject=Patient/1&code=…`.
    pub query: Option<String>,
    /// The server that observed the event (`AuditEvent.source.observer`).
    pub source: String,
    /// The client's network address (IP, `IP:port`, or host name).
    pub address: Option<String>,
    /// The access was made under a break-the-glass emergency declaration.
    pub break_glass: bool,
}

impl AuditRecord {
    /// A disclosure that changed nothing (a read, vread, search or history): the records a
    /// log may gather for a while before committing ([`crate::pg`]'s commit window).
    pub fn is_read_only(&self) -> bool {
        self.action == Action::Read
            || matches!(
                self.interaction,
                Interaction::SearchType
                    | Interaction::SearchSystem
                    | Interaction::HistoryInstance
                    | Interaction::HistoryType
                    | Interaction::HistorySystem
            )
    }

    /// A successful `interaction` by `agent_id` (the requestor) observed by `source`, now;
    /// the action is the interaction's usual one. Fill in the rest by field.
    pub fn new(interaction: Interaction, agent_id: &str, source: &str) -> AuditRecord {
        AuditRecord {
            time: now_micros(),
            action: interaction.default_action(),
            interaction,
            outcome: Outcome::Success,
            reason: None,
            agent: Agent {
                id: agent_id.to_string(),
                name: None,
                role: None,
                requestor: true,
            },
            on_behalf_of: None,
            purpose_of_use: Vec::new(),
            patients: Vec::new(),
            entities: Vec::new(),
            query: None,
            source: source.to_string(),
            address: None,
            break_glass: false,
        }
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
