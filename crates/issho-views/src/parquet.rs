//! Rows as an Apache Parquet file, written by hand (the format's reference crate pulls in
//! Arrow, a compile far beyond this project's budget): one optional column per view column,
//! typed by the view's declared `type` (boolean → BOOLEAN; integer, positiveInt, unsignedInt,
//! integer64 → INT64; decimal → DOUBLE; anything else, and collections as JSON text →
//! BYTE_ARRAY UTF8), PLAIN values, definition levels in the RLE/bit-packed hybrid, no
//! compression, a row group per 65,536 rows; the footer's metadata in Thrift's compact
//! protocol.

use crate::Column;
use serde_json::Value;
use std::io::Write;

/// Rows per row group.
pub const ROW_GROUP: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Int64,
    Double,
    Text,
}

impl Kind {
    fn of(c: &Column) -> Kind {
        if c.collection {
            return Kind::Text;
        }
        match c.ty.as_deref() {
            Some("boolean") => Kind::Boolean,
            Some("integer" | "positiveInt" | "unsignedInt" | "integer64") => Kind::Int64,
            Some("decimal") => Kind::Double,
            _ => Kind::Text,
        }
    }
    /// Parquet's physical type.
    fn physical(self) -> i32 {
        match self {
            Kind::Boolean => 0,
            Kind::Int64 => 2,
            Kind::Double => 5,
            Kind::Text => 6,
        }
    }
}

/// Thrift compact protocol, the parts Parquet's metadata needs.
#[derive(Default)]
struct Thrift {
    out: Vec<u8>,
    last: Vec<i16>,
}

const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_STRUCT: u8 = 12;

impl Thrift {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn begin(&mut self) {
        self.last.push(0);
    }
    fn end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }
    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last_mut().expect("in a struct");
        let delta = id - *last;
        *last = id;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            self.zigzag(i64::from(id));
        }
    }
    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, T_I32);
        self.zigzag(i64::from(v));
    }
    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, T_I64);
        self.zigzag(v);
    }
    fn string(&mut self, id: i16, s: &str) {
        self.field(id, T_BINARY);
        self.varint(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }
    fn list(&mut self, id: i16, elem: u8, n: usize) {
        self.field(id, T_LIST);
        if n < 15 {
            self.out.push(((n as u8) << 4) | elem);
        } else {
            self.out.push(0xf0 | elem);
            self.varint(n as u64);
        }
    }
    fn struct_field(&mut self, id: i16) {
        self.field(id, T_STRUCT);
        self.begin();
    }
}

/// One column chunk's page: definition levels and PLAIN values.
fn page(kind: Kind, cells: &[&Value], column: &str) -> Result<Vec<u8>, String> {
    // Definition levels (1: a value, 0: null), bit-packed groups of eight, LSB first.
    let mut levels = Vec::new();
    let groups = cells.len().div_ceil(8);
    let mut header = Thrift::default();
    header.varint(((groups as u64) << 1) | 1);
    levels.extend_from_slice(&header.out);
    for g in 0..groups {
        let mut b = 0u8;
        for i in 0..8 {
            if cells.get(g * 8 + i).is_some_and(|v| !v.is_null()) {
                b |= 1 << i;
            }
        }
        levels.push(b);
    }
    let mut out = Vec::with_capacity(levels.len() + 4 + cells.len() * 8);
    out.extend_from_slice(&(levels.len() as u32).to_le_bytes());
    out.extend_from_slice(&levels);
    let bad = |v: &Value, what: &str| format!("column {column}: {v} is not {what}");
    let present: Vec<&Value> = cells.iter().copied().filter(|v| !v.is_null()).collect();
    match kind {
        Kind::Boolean => {
            let mut bits = vec![0u8; present.len().div_ceil(8)];
            for (i, v) in present.iter().enumerate() {
                if v.as_bool().ok_or_else(|| bad(v, "a boolean"))? {
                    bits[i / 8] |= 1 << (i % 8);
                }
            }
            out.extend_from_slice(&bits);
        }
        Kind::Int64 => {
            for v in present {
                let n = v.as_i64().ok_or_else(|| bad(v, "an integer"))?;
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        Kind::Double => {
            for v in present {
                let n = v.as_f64().ok_or_else(|| bad(v, "a number"))?;
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        Kind::Text => {
            for v in present {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    Ok(out)
}

/// A Parquet file being written: rows are gathered into row groups.
pub struct ParquetWriter<W: Write> {
    out: W,
    columns: Vec<Column>,
    kinds: Vec<Kind>,
    rows: Vec<Vec<Value>>,
    written: u64,
    /// Per row group: (rows, per column: (offset, chunk bytes, values)).
    groups: Vec<(usize, Vec<(u64, u64)>)>,
    total_rows: u64,
}

fn io(e: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl<W: Write> ParquetWriter<W> {
    pub fn new(columns: &[Column], mut out: W) -> std::io::Result<ParquetWriter<W>> {
        out.write_all(b"PAR1")?;
        Ok(ParquetWriter {
            out,
            kinds: columns.iter().map(Kind::of).collect(),
            columns: columns.to_vec(),
            rows: Vec::new(),
            written: 4,
            groups: Vec::new(),
            total_rows: 0,
        })
    }

    pub fn row(&mut self, row: &[Value]) -> std::io::Result<()> {
        self.rows.push(row.to_vec());
        if self.rows.len() >= ROW_GROUP {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> std::io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let mut chunks = Vec::with_capacity(self.columns.len());
        for (k, c) in self.columns.iter().enumerate() {
            let cells: Vec<&Value> = self.rows.iter().map(|r| &r[k]).collect();
            let data = page(self.kinds[k], &cells, &c.name).map_err(io)?;
            let mut h = Thrift::default();
            h.begin();
            h.i32(1, 0); // DATA_PAGE
            h.i32(2, data.len() as i32);
            h.i32(3, data.len() as i32);
            h.struct_field(5);
            h.i32(1, n as i32);
            h.i32(2, 0); // PLAIN
            h.i32(3, 3); // RLE (the hybrid) for definition levels
            h.i32(4, 3);
            h.end();
            h.end();
            let offset = self.written;
            self.out.write_all(&h.out)?;
            self.out.write_all(&data)?;
            let size = (h.out.len() + data.len()) as u64;
            self.written += size;
            chunks.push((offset, size));
        }
        self.total_rows += n as u64;
        self.groups.push((n, chunks));
        self.rows.clear();
        Ok(())
    }

    /// Writes the last row group and the footer; hands back the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_group()?;
        let mut t = Thrift::default();
        t.begin();
        t.i32(1, 1); // version
        t.list(2, T_STRUCT, self.columns.len() + 1);
        t.begin();
        t.string(4, "schema");
        t.i32(5, self.columns.len() as i32);
        t.end();
        for (c, k) in self.columns.iter().zip(&self.kinds) {
            t.begin();
            t.i32(1, k.physical());
            t.i32(3, 1); // OPTIONAL
            t.string(4, &c.name);
            if *k == Kind::Text {
                t.i32(6, 0); // UTF8
            }
            t.end();
        }
        t.i64(3, self.total_rows as i64);
        t.list(4, T_STRUCT, self.groups.len());
        for (rows, chunks) in &self.groups {
            t.begin();
            t.list(1, T_STRUCT, chunks.len());
            for ((offset, size), (c, k)) in chunks.iter().zip(self.columns.iter().zip(&self.kinds))
            {
                t.begin();
                t.i64(2, *offset as i64);
                t.struct_field(3);
                t.i32(1, k.physical());
                t.list(2, T_I32, 2);
                t.zigzag(0); // PLAIN
                t.zigzag(3); // RLE
                t.list(3, T_BINARY, 1);
                t.varint(c.name.len() as u64);
                t.out.extend_from_slice(c.name.as_bytes());
                t.i32(4, 0); // UNCOMPRESSED
                t.i64(5, *rows as i64);
                t.i64(6, *size as i64);
                t.i64(7, *size as i64);
                t.i64(9, *offset as i64);
                t.end();
                t.end();
            }
            let total: u64 = chunks.iter().map(|(_, s)| s).sum();
            t.i64(2, total as i64);
            t.i64(3, *rows as i64);
            t.end();
        }
        t.string(6, "issho (SQL on FHIR v2)");
        t.end();
        self.out.write_all(&t.out)?;
        self.out.write_all(&(t.out.len() as u32).to_le_bytes())?;
        self.out.write_all(b"PAR1")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_file_has_its_magic_footer_and_pages() {
        let cols = vec![
            Column {
                name: "id".into(),
                ty: Some("id".into()),
                collection: false,
            },
            Column {
                name: "n".into(),
                ty: Some("integer".into()),
                collection: false,
            },
            Column {
                name: "ok".into(),
                ty: Some("boolean".into()),
                collection: false,
            },
        ];
        let mut w = ParquetWriter::new(&cols, Vec::new()).unwrap();
        for i in 0..10 {
            w.row(&[
                json!(format!("p{i}")),
                if i % 3 == 0 { Value::Null } else { json!(i) },
                json!(i % 2 == 0),
            ])
            .unwrap();
        }
        let b = w.finish().unwrap();
        assert_eq!(&b[..4], b"PAR1");
        assert_eq!(&b[b.len() - 4..], b"PAR1");
        let footer = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap()) as usize;
        assert!(footer > 0 && footer < b.len());
        let meta = &b[b.len() - 8 - footer..b.len() - 8];
        assert!(meta.windows(2).any(|w| w == b"id"));
        // A mistyped value is an error, not a silent null.
        let mut w = ParquetWriter::new(&cols[1..2], Vec::new()).unwrap();
        w.row(&[json!("x")]).unwrap();
        assert!(w.finish().is_err());
        // Thrift's varints and zigzag.
        let mut t = Thrift::default();
        t.zigzag(-1);
        t.varint(300);
        assert_eq!(t.out, [1, 0xac, 0x02]);
    }
}
