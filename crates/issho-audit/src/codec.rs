//! How one [`AuditRecord`] is kept in a segment of the SQLite audit trail: small integers and
//! references into the segment's dictionaries instead of text, so that a read costs tens of
//! bytes rather than hundreds.
//!
//! The encoding is lossless — `decode(encode(r)) == r` for every record — because the hash
//! chain covers the record itself ([`crate::chain::block_hash`]), not these bytes: a changed
//! dictionary entry changes every record that uses it, and the chain names the block.
//!
//! A row is `(t, k, agent, ctx, x)`:
//! - `t`: the time, in microseconds after the segment's base time;
//! - `k`: interaction, action, outcome, break-the-glass and requestor packed into one integer;
//! - `agent`: the agent's key ([`crate::event::agent_key`]) in the segment's `agent` table;
//! - `ctx`: the rest of who and where (name, role, organization, purposes, observer,
//!   address) as one text in the dictionary — a busy server has few distinct contexts;
//! - `x`: varints: the patients (the `patient` table, or the dictionary for a reference that
//!   is not in key form), the entities (a resource type from the dictionary and a UUID id in
//!   16 bytes, with its version as a number; anything else as dictionary text), the query and
//!   the reason.

use crate::record::{Action, AuditRecord, Interaction, Outcome};

/// Which table a text is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `agent`: agent keys (searched by text).
    Agent,
    /// `patient`: patient keys (searched by text).
    Patient,
    /// `dict`: everything else (only ever looked up by id).
    Text,
}

/// Texts to ids, adding what is new.
pub(crate) trait Intern {
    fn intern(&mut self, kind: Kind, text: &str) -> Result<i64, String>;
}

/// Ids back to texts.
pub(crate) trait Resolve {
    fn resolve(&mut self, kind: Kind, id: i64) -> Result<String, String>;
}

/// One record as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub t: i64,
    pub k: i64,
    pub agent: i64,
    pub ctx: i64,
    pub x: Vec<u8>,
    /// The patients' keys' ids, sorted, once each: the per-patient index rows.
    pub patients: Vec<i64>,
}

const ACTIONS: [Action; 5] = [
    Action::Create,
    Action::Read,
    Action::Update,
    Action::Delete,
    Action::Execute,
];
const OUTCOMES: [Outcome; 4] = [
    Outcome::Success,
    Outcome::MinorFailure,
    Outcome::SeriousFailure,
    Outcome::MajorFailure,
];

fn index_of<T: PartialEq>(all: &[T], v: &T) -> i64 {
    all.iter().position(|a| a == v).unwrap_or(0) as i64
}

/// Who and where, apart from the agent's key, as hashed into the dictionary.
#[derive(serde::Serialize, serde::Deserialize)]
struct Context {
    /// The agent's id as recorded, when it differs from its key.
    id: Option<String>,
    name: Option<String>,
    role: Option<String>,
    on_behalf_of: Option<String>,
    purpose_of_use: Vec<String>,
    source: String,
    address: Option<String>,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or("truncated row")?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("malformed number in row".into())
    }

    fn id(&mut self) -> Result<i64, String> {
        i64::try_from(self.varint()?).map_err(|_| "malformed id in row".into())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("truncated row")?;
        let s = self.bytes.get(self.at..end).ok_or("truncated row")?;
        self.at = end;
        Ok(s)
    }
}

/// The 16 bytes of a UUID written in its canonical form (lowercase, hyphenated), which is
/// what issho gives new resources; None for any other id.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[n] = (hex(b[i])? << 4) | hex(b[i + 1])?;
        n += 1;
        i += 2;
    }
    Some(out)
}

fn uuid_text(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// A version written as a plain number (no sign, no leading zero).
fn plain_number(s: &str) -> Option<u64> {
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// Entity forms (the low two bits of an entity's first varint).
const WHOLE: u64 = 0;
const UUID: u64 = 1;
const UUID_VERSION: u64 = 2;

fn put_entity(x: &mut Vec<u8>, dict: &mut dyn Intern, e: &str) -> Result<(), String> {
    let parts: Vec<&str> = e.split('/').collect();
    let (ty, id, version) = match parts.as_slice() {
        [ty, id] => (*ty, *id, None),
        [ty, id, "_history", v] => (*ty, *id, plain_number(v)),
        _ => ("", "", None),
    };
    let simple = !ty.is_empty() && (parts.len() == 2 || version.is_some());
    match uuid_bytes(id).filter(|_| simple) {
        Some(uuid) => {
            let t = dict.intern(Kind::Text, ty)? as u64;
            put_varint(
                x,
                t << 2
                    | if version.is_some() {
                        UUID_VERSION
                    } else {
                        UUID
                    },
            );
            x.extend_from_slice(&uuid);
            if let Some(v) = version {
                put_varint(x, v);
            }
        }
        None => put_varint(x, (dict.intern(Kind::Text, e)? as u64) << 2 | WHOLE),
    }
    Ok(())
}

fn get_entity(r: &mut Reader, dict: &mut dyn Resolve) -> Result<String, String> {
    let head = r.varint()?;
    let id = i64::try_from(head >> 2).map_err(|_| "malformed id in row")?;
    match head & 3 {
        WHOLE => dict.resolve(Kind::Text, id),
        form @ (UUID | UUID_VERSION) => {
            let ty = dict.resolve(Kind::Text, id)?;
            let uuid = uuid_text(r.take(16)?);
            Ok(if form == UUID_VERSION {
                format!("{ty}/{uuid}/_history/{}", r.varint()?)
            } else {
                format!("{ty}/{uuid}")
            })
        }
        _ => Err("unknown entity form in row".into()),
    }
}

fn put_optional(x: &mut Vec<u8>, dict: &mut dyn Intern, s: Option<&str>) -> Result<(), String> {
    match s {
        None => put_varint(x, 0),
        Some(s) => put_varint(x, dict.intern(Kind::Text, s)? as u64 + 1),
    }
    Ok(())
}

fn get_optional(r: &mut Reader, dict: &mut dyn Resolve) -> Result<Option<String>, String> {
    match r.id()? {
        0 => Ok(None),
        n => dict.resolve(Kind::Text, n - 1).map(Some),
    }
}

/// The row of `rec` in a segment whose base time is `base`.
pub(crate) fn encode(rec: &AuditRecord, base: i64, dict: &mut dyn Intern) -> Result<Row, String> {
    let key = crate::event::agent_key(rec);
    let k = index_of(&Interaction::ALL, &rec.interaction)
        | index_of(&ACTIONS, &rec.action) << 5
        | index_of(&OUTCOMES, &rec.outcome) << 8
        | i64::from(rec.break_glass) << 10
        | i64::from(rec.agent.requestor) << 11;
    let ctx = Context {
        id: (rec.agent.id != key).then(|| rec.agent.id.clone()),
        name: rec.agent.name.clone(),
        role: rec.agent.role.clone(),
        on_behalf_of: rec.on_behalf_of.clone(),
        purpose_of_use: rec.purpose_of_use.clone(),
        source: rec.source.clone(),
        address: rec.address.clone(),
    };
    let ctx = serde_json::to_string(&ctx).map_err(|e| e.to_string())?;
    let keys = crate::event::patient_keys(rec);
    let mut x = Vec::with_capacity(32);
    put_varint(&mut x, rec.patients.len() as u64);
    for p in &rec.patients {
        // A reference in key form is the index's own id; any other text goes to the dictionary.
        if keys.binary_search(p).is_ok() {
            put_varint(&mut x, (dict.intern(Kind::Patient, p)? as u64) << 1);
        } else {
            put_varint(&mut x, (dict.intern(Kind::Text, p)? as u64) << 1 | 1);
        }
    }
    put_varint(&mut x, rec.entities.len() as u64);
    for e in &rec.entities {
        put_entity(&mut x, dict, e)?;
    }
    put_optional(&mut x, dict, rec.query.as_deref())?;
    put_optional(&mut x, dict, rec.reason.as_deref())?;
    let mut patients = Vec::with_capacity(keys.len());
    for p in &keys {
        patients.push(dict.intern(Kind::Patient, p)?);
    }
    patients.sort_unstable();
    patients.dedup();
    Ok(Row {
        t: rec.time.checked_sub(base).ok_or("time out of range")?,
        k,
        agent: dict.intern(Kind::Agent, &key)?,
        ctx: dict.intern(Kind::Text, &ctx)?,
        x,
        patients,
    })
}

/// The record a row holds.
pub(crate) fn decode(row: &Row, base: i64, dict: &mut dyn Resolve) -> Result<AuditRecord, String> {
    let pick = |shift: u32, bits: u32| ((row.k >> shift) & ((1 << bits) - 1)) as usize;
    let interaction = *Interaction::ALL
        .get(pick(0, 5))
        .ok_or("unknown interaction in row")?;
    let action = *ACTIONS.get(pick(5, 3)).ok_or("unknown action in row")?;
    let outcome = OUTCOMES[pick(8, 2)];
    if row.k >> 12 != 0 {
        return Err("unknown flags in row".into());
    }
    let ctx: Context = serde_json::from_str(&dict.resolve(Kind::Text, row.ctx)?)
        .map_err(|e| format!("malformed context: {e}"))?;
    let key = dict.resolve(Kind::Agent, row.agent)?;
    let mut r = Reader {
        bytes: &row.x,
        at: 0,
    };
    let n = r.varint()?;
    let mut patients = Vec::new();
    for _ in 0..n {
        let v = r.varint()?;
        let id = i64::try_from(v >> 1).map_err(|_| "malformed id in row")?;
        let kind = if v & 1 == 0 {
            Kind::Patient
        } else {
            Kind::Text
        };
        patients.push(dict.resolve(kind, id)?);
    }
    let n = r.varint()?;
    let mut entities = Vec::new();
    for _ in 0..n {
        entities.push(get_entity(&mut r, dict)?);
    }
    let query = get_optional(&mut r, dict)?;
    let reason = get_optional(&mut r, dict)?;
    if r.at != row.x.len() {
        return Err("trailing bytes in row".into());
    }
    Ok(AuditRecord {
        time: row.t.checked_add(base).ok_or("time out of range in row")?,
        action,
        interaction,
        outcome,
        reason,
        agent: crate::record::Agent {
            id: ctx.id.unwrap_or(key),
            name: ctx.name,
            role: ctx.role,
            requestor: row.k >> 11 & 1 == 1,
        },
        on_behalf_of: ctx.on_behalf_of,
        purpose_of_use: ctx.purpose_of_use,
        patients,
        entities,
        query,
        source: ctx.source,
        address: ctx.address,
        break_glass: row.k >> 10 & 1 == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem {
        ids: HashMap<(Kind, String), i64>,
        texts: HashMap<(Kind, i64), String>,
    }

    impl Intern for Mem {
        fn intern(&mut self, kind: Kind, text: &str) -> Result<i64, String> {
            let next = self.ids.len() as i64 + 1;
            let id = *self.ids.entry((kind, text.to_string())).or_insert(next);
            self.texts.insert((kind, id), text.to_string());
            Ok(id)
        }
    }

    impl Resolve for Mem {
        fn resolve(&mut self, kind: Kind, id: i64) -> Result<String, String> {
            self.texts
                .get(&(kind, id))
                .cloned()
                .ok_or("no such id".into())
        }
    }

    fn read() -> AuditRecord {
        let mut r = AuditRecord::new(Interaction::Read, "Practitioner/doc-1", "issho");
        r.time = 1_764_900_000_123_456;
        r.agent.role = Some("doctor".into());
        r.on_behalf_of = Some("Organization/org-001".into());
        r.purpose_of_use = vec!["TREAT".into()];
        r.patients = vec!["Patient/9b2e6a4c-1d0f-4a57-9a31-2f4f0c1d2e3f".into()];
        r.entities = vec!["Observation/0f8c2a1e-7b3d-4c5e-8f9a-1b2c3d4e5f60/_history/3".into()];
        r
    }

    fn round_trip(rec: &AuditRecord) -> Row {
        let mut mem = Mem::default();
        let row = encode(rec, 1_764_800_000_000_000, &mut mem).unwrap();
        let back = decode(&row, 1_764_800_000_000_000, &mut mem).unwrap();
        assert_eq!(&back, rec);
        row
    }

    #[test]
    fn a_read_is_a_few_bytes_and_round_trips() {
        let row = round_trip(&read());
        // two counts, a patient id, the type id, 16 bytes of UUID, the version, two absences
        assert!(row.x.len() <= 24, "{}", row.x.len());
        assert_eq!(row.patients.len(), 1);
    }

    #[test]
    fn odd_records_round_trip() {
        let mut r = read();
        r.agent.id = "  ".into(); // keyed as `anonymous`, kept as written
        r.agent.name = Some("医師 一郎".into());
        r.agent.requestor = false;
        r.patients = vec![
            "Patient/b".into(),
            " Patient/a\n".into(),
            "Patient/b".into(),
            "Patient/a".into(),
        ];
        r.entities = vec![
            "Observation/o1".into(),
            "Observation/0F8C2A1E-7B3D-4C5E-8F9A-1B2C3D4E5F60".into(),
            "Observation/0f8c2a1e-7b3d-4c5e-8f9a-1b2c3d4e5f60/_history/03".into(),
            "Observation/0f8c2a1e-7b3d-4c5e-8f9a-1b2c3d4e5f60/_history/x".into(),
            "Patient/0f8c2a1e-7b3d-4c5e-8f9a-1b2c3d4e5f60".into(),
            "a/b/c".into(),
            "".into(),
        ];
        r.query = Some("Observation?code=1234-5".into());
        r.reason = Some("denied".into());
        r.address = Some("192.0.2.1".into());
        r.break_glass = true;
        for (i, interaction) in Interaction::ALL.into_iter().enumerate() {
            r.interaction = interaction;
            r.action = ACTIONS[i % 5];
            r.outcome = OUTCOMES[i % 4];
            r.time = -5 + i as i64;
            let row = round_trip(&r);
            assert_eq!(row.patients.len(), 2, "Patient/a and Patient/b once each");
        }
    }

    #[test]
    fn a_malformed_row_is_an_error_not_a_panic() {
        let mut mem = Mem::default();
        let row = encode(&read(), 0, &mut mem).unwrap();
        for cut in 0..row.x.len() {
            let short = Row {
                x: row.x[..cut].to_vec(),
                ..row.clone()
            };
            assert!(decode(&short, 0, &mut mem).is_err());
        }
        let mut long = row.clone();
        long.x.push(0);
        assert!(decode(&long, 0, &mut mem).is_err());
        let flags = Row {
            k: row.k | 1 << 20,
            ..row.clone()
        };
        assert!(decode(&flags, 0, &mut mem).is_err());
        let unknown = Row { k: 31, ..row };
        assert!(decode(&unknown, 0, &mut mem).is_err());
    }

    #[test]
    fn uuids_round_trip_only_in_canonical_form() {
        let u = "0f8c2a1e-7b3d-4c5e-8f9a-1b2c3d4e5f60";
        assert_eq!(uuid_text(&uuid_bytes(u).unwrap()), u);
        assert!(uuid_bytes(&u.to_uppercase()).is_none());
        assert!(uuid_bytes(&u.replace('-', "_")).is_none());
        assert!(uuid_bytes(&u[..35]).is_none());
        assert_eq!(plain_number("12"), Some(12));
        assert_eq!(plain_number("012"), None);
        assert_eq!(plain_number("+1"), None);
    }
}
