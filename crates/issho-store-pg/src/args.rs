//! Bound values: issho-store-sql's [`Arg`]s as PostgreSQL parameters.
//!
//! The compiler does not know the column types (SQLite has none); PostgreSQL infers each
//! parameter's type from its use. An [`Arg`] therefore converts itself to the inferred type
//! when that is exact (an integer bound where a `double precision` is compared, a number where
//! text is expected) and refuses otherwise.

use bytes::BytesMut;
use issho_store_sql::Arg;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::error::Error;

type Boxed = Box<dyn Error + Sync + Send>;

/// One bound value.
#[derive(Debug)]
pub(crate) struct PgArg<'a>(pub &'a Arg);

impl ToSql for PgArg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Boxed> {
        match (self.0, ty) {
            (Arg::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Arg::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Arg::Int(v), &Type::INT2) => i16::try_from(*v)?.to_sql(ty, out),
            (Arg::Int(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            (Arg::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Arg::Real(v), &Type::FLOAT4) => (*v as f32).to_sql(ty, out),
            // PostgreSQL's text cannot hold U+0000 (JSON may): removed, alike in the index
            // rows and in searched values, so a search still finds what was indexed.
            (Arg::Text(v), _) if v.contains('\0') => v.replace('\0', "").as_str().to_sql(ty, out),
            (Arg::Text(v), _) => v.as_str().to_sql(ty, out),
            (Arg::Int(v), _) => v.to_string().as_str().to_sql(ty, out),
            (Arg::Real(v), _) => v.to_string().as_str().to_sql(ty, out),
            (Arg::Ints(v), _) => v.to_sql(ty, out),
            (Arg::Texts(v), _) => v.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// The parameters of a statement, as the driver takes them.
pub(crate) fn params<'a>(args: &'a [PgArg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

pub(crate) fn wrap(args: &[Arg]) -> Vec<PgArg<'_>> {
    args.iter().map(PgArg).collect()
}
