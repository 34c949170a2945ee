//! Rows written out: CSV (RFC 4180, a header of the column names; null is an empty field, a
//! collection or an object its JSON text), NDJSON (one object per row, the columns in the
//! view's order) or Parquet (`parquet.rs`).

use crate::Column;
use serde_json::{Map, Value};
use std::io::Write;

/// An output format of `$run` and `issho view run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
}

impl Format {
    /// From a `_format` value or a file extension: `csv`, `text/csv`, `ndjson`,
    /// `application/x-ndjson`, `application/fhir+ndjson`, `parquet`,
    /// `application/vnd.apache.parquet`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" | "text/csv" => Some(Format::Csv),
            "ndjson"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/fhir+ndjson" => Some(Format::Ndjson),
            "parquet" | "application/vnd.apache.parquet" | "application/parquet" => {
                Some(Format::Parquet)
            }
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// A CSV field's bytes, borrowed when it is text.
struct Field<'a>(std::borrow::Cow<'a, str>);

impl<'a> Field<'a> {
    fn of(v: &'a Value) -> Field<'a> {
        Field(cell(v))
    }
}

impl AsRef<[u8]> for Field<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Writes rows of one view.
pub struct Writer<W: Write> {
    format: Format,
    names: Vec<String>,
    csv: Option<csv::Writer<W>>,
    plain: Option<W>,
    parquet: Option<crate::parquet::ParquetWriter<W>>,
    rows: u64,
}

/// A CSV field: text as it is (not copied), other values as their JSON text.
fn cell(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::Null => std::borrow::Cow::Borrowed(""),
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

impl<W: Write> Writer<W> {
    /// A writer; CSV writes its header at once.
    pub fn new(format: Format, columns: &[Column], out: W) -> std::io::Result<Writer<W>> {
        Writer::with_header(format, columns, out, true)
    }

    /// A writer; CSV writes its header when `header` (the `$run` parameter).
    pub fn with_header(
        format: Format,
        columns: &[Column],
        out: W,
        header: bool,
    ) -> std::io::Result<Writer<W>> {
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let (mut csv, mut plain, mut parquet) = (None, None, None);
        match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new().from_writer(out);
                if header {
                    w.write_record(&names).map_err(std::io::Error::other)?;
                }
                csv = Some(w);
            }
            Format::Ndjson => plain = Some(out),
            Format::Parquet => parquet = Some(crate::parquet::ParquetWriter::new(columns, out)?),
        }
        Ok(Writer {
            format,
            names,
            csv,
            plain,
            parquet,
            rows: 0,
        })
    }

    pub fn row(&mut self, row: &[Value]) -> std::io::Result<()> {
        self.rows += 1;
        match self.format {
            Format::Csv => {
                let w = self.csv.as_mut().expect("csv writer");
                w.write_record(row.iter().map(Field::of))
                    .map_err(std::io::Error::other)
            }
            Format::Parquet => self.parquet.as_mut().expect("parquet writer").row(row),
            Format::Ndjson => {
                let w = self.plain.as_mut().expect("plain writer");
                let mut m = Map::with_capacity(row.len());
                for (n, v) in self.names.iter().zip(row) {
                    m.insert(n.clone(), v.clone());
                }
                serde_json::to_writer(&mut *w, &Value::Object(m))?;
                w.write_all(b"\n")
            }
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush and hand back the output.
    pub fn finish(self) -> std::io::Result<W> {
        match (self.csv, self.plain, self.parquet) {
            (Some(w), _, _) => w
                .into_inner()
                .map_err(|e| std::io::Error::other(e.to_string())),
            (_, Some(mut w), _) => {
                w.flush()?;
                Ok(w)
            }
            (_, _, Some(p)) => p.finish(),
            _ => unreachable!("one writer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_and_ndjson_keep_the_columns_order_and_nulls() {
        let cols: Vec<Column> = ["id", "name", "given"]
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                ty: None,
                collection: *n == "given",
            })
            .collect();
        let rows = [
            vec![json!("p1"), json!("山田, \"太郎\""), json!(["a", "b"])],
            vec![json!("p2"), Value::Null, json!([])],
        ];
        let mut w = Writer::new(Format::Csv, &cols, Vec::new()).unwrap();
        for r in &rows {
            w.row(r).unwrap();
        }
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            text,
            "id,name,given\np1,\"山田, \"\"太郎\"\"\",\"[\"\"a\"\",\"\"b\"\"]\"\np2,,[]\n"
        );
        let mut w = Writer::new(Format::Ndjson, &cols, Vec::new()).unwrap();
        for r in &rows {
            w.row(r).unwrap();
        }
        assert_eq!(w.rows(), 2);
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["given"], json!(["a", "b"]));
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("{\"id\":\"p2\",\"name\":null")
        );
    }
}
