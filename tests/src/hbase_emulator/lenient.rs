//! Tolerance for absent arguments.
//!
//! The generated `HbaseSyncProcessor` treats every argument of every call as required
//! (`verify_required_field_exists`), but real clients omit some: happybase and clients
//! generated from older IDLs do not send `attributes`, and an absent `checkAndPut` value
//! means "the column must not exist". HBase's Java server accepts all of these.
//!
//! [`LenientProcessor`] sits in front of the generated processor: it reads the incoming
//! message's argument struct generically (a [`Value`] tree, read by wire type), adds every
//! argument the IDL declares but the message lacks with the zero value of its IDL type
//! (empty binary/string, empty list/set/map, 0, false, empty struct), re-serializes the
//! message with the strict binary protocol into a buffer and lets the generated processor
//! read it from there, writing its reply to the real output protocol.
//!
//! Inside struct arguments (also in lists, sets and maps of them), absent fields that have a
//! default value in the IDL get that value, as the Java server's generated code does (the
//! Rust reader would use 0 / "" instead): a `ColumnDescriptor` sent with only its name has
//! `maxVersions = 3`, `compression = "NONE"`, `bloomFilterType = "NONE"`, ….
//!
//! The argument types come from the service definition in `Hbase.thrift` (a copy of the
//! IDL the `hbase-thrift` crate was generated from), parsed at startup by a small tokenizer
//! and parser ([`Idl::parse`]) that understands just enough Thrift IDL for that file.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMapIdentifier, TMessageType, TOutputProtocol, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::server::TProcessor;
use thrift::{ProtocolError, ProtocolErrorKind};

/// The HBase Thrift1 IDL (Apache-2.0), as shipped with the `hbase-thrift` crate.
pub const HBASE_IDL: &str = include_str!("Hbase.thrift");

/// Deepest nesting of structs/containers accepted in an argument struct.
const MAX_DEPTH: usize = 64;

/// A Thrift type as far as the wire is concerned (typedefs resolved, enums as i32).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdlType {
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    /// `string` or `binary` (the same on the wire).
    Binary,
    /// A struct, exception or union, by name.
    Struct(String),
    List(Box<IdlType>),
    Set(Box<IdlType>),
    Map(Box<IdlType>, Box<IdlType>),
}

impl IdlType {
    pub fn ttype(&self) -> TType {
        match self {
            IdlType::Bool => TType::Bool,
            IdlType::Byte => TType::I08,
            IdlType::I16 => TType::I16,
            IdlType::I32 => TType::I32,
            IdlType::I64 => TType::I64,
            IdlType::Double => TType::Double,
            IdlType::Binary => TType::String,
            IdlType::Struct(_) => TType::Struct,
            IdlType::List(_) => TType::List,
            IdlType::Set(_) => TType::Set,
            IdlType::Map(_, _) => TType::Map,
        }
    }

    /// The zero value of this type (a struct: empty; see [`Idl::zero`]).
    pub fn zero(&self) -> Value {
        match self {
            IdlType::Bool => Value::Bool(false),
            IdlType::Byte => Value::I8(0),
            IdlType::I16 => Value::I16(0),
            IdlType::I32 => Value::I32(0),
            IdlType::I64 => Value::I64(0),
            IdlType::Double => Value::Double(0.0),
            IdlType::Binary => Value::Bytes(Vec::new()),
            IdlType::Struct(_) => Value::Struct(Vec::new()),
            IdlType::List(e) => Value::List(e.ttype(), Vec::new()),
            IdlType::Set(e) => Value::Set(e.ttype(), Vec::new()),
            IdlType::Map(k, v) => Value::Map(k.ttype(), v.ttype(), Vec::new()),
        }
    }
}

/// A Thrift value read generically from the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    Bytes(Vec<u8>),
    /// Fields in wire order: (id, value).
    Struct(Vec<(i16, Value)>),
    List(TType, Vec<Value>),
    Set(TType, Vec<Value>),
    Map(TType, TType, Vec<(Value, Value)>),
}

impl Value {
    pub fn ttype(&self) -> TType {
        match self {
            Value::Bool(_) => TType::Bool,
            Value::I8(_) => TType::I08,
            Value::I16(_) => TType::I16,
            Value::I32(_) => TType::I32,
            Value::I64(_) => TType::I64,
            Value::Double(_) => TType::Double,
            Value::Bytes(_) => TType::String,
            Value::Struct(_) => TType::Struct,
            Value::List(_, _) => TType::List,
            Value::Set(_, _) => TType::Set,
            Value::Map(_, _, _) => TType::Map,
        }
    }

    /// Reads a value of wire type `ttype`.
    pub fn read(i: &mut dyn TInputProtocol, ttype: TType) -> thrift::Result<Value> {
        read_value(i, ttype, 0)
    }

    pub fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        match self {
            Value::Bool(b) => o.write_bool(*b),
            Value::I8(v) => o.write_i8(*v),
            Value::I16(v) => o.write_i16(*v),
            Value::I32(v) => o.write_i32(*v),
            Value::I64(v) => o.write_i64(*v),
            Value::Double(v) => o.write_double(*v),
            Value::Bytes(b) => o.write_bytes(b),
            Value::Struct(fields) => {
                o.write_struct_begin(&TStructIdentifier::new("args"))?;
                for (id, v) in fields {
                    o.write_field_begin(&TFieldIdentifier::new("f", v.ttype(), *id))?;
                    v.write(o)?;
                    o.write_field_end()?;
                }
                o.write_field_stop()?;
                o.write_struct_end()
            }
            Value::List(t, items) => {
                o.write_list_begin(&TListIdentifier::new(*t, items.len() as i32))?;
                for v in items {
                    v.write(o)?;
                }
                o.write_list_end()
            }
            Value::Set(t, items) => {
                o.write_set_begin(&TSetIdentifier::new(*t, items.len() as i32))?;
                for v in items {
                    v.write(o)?;
                }
                o.write_set_end()
            }
            Value::Map(kt, vt, entries) => {
                o.write_map_begin(&TMapIdentifier::new(*kt, *vt, entries.len() as i32))?;
                for (k, v) in entries {
                    k.write(o)?;
                    v.write(o)?;
                }
                o.write_map_end()
            }
        }
    }
}

fn protocol_error(message: String) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(ProtocolErrorKind::InvalidData, message))
}

fn read_value(i: &mut dyn TInputProtocol, ttype: TType, depth: usize) -> thrift::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(protocol_error("argument nesting too deep".into()));
    }
    Ok(match ttype {
        TType::Bool => Value::Bool(i.read_bool()?),
        TType::I08 => Value::I8(i.read_i8()?),
        TType::I16 => Value::I16(i.read_i16()?),
        TType::I32 => Value::I32(i.read_i32()?),
        TType::I64 => Value::I64(i.read_i64()?),
        TType::Double => Value::Double(i.read_double()?),
        TType::String => Value::Bytes(i.read_bytes()?),
        TType::Struct => {
            i.read_struct_begin()?;
            let mut fields = Vec::new();
            loop {
                let f = i.read_field_begin()?;
                if f.field_type == TType::Stop {
                    break;
                }
                let id =
                    f.id.ok_or_else(|| protocol_error("field without an id".into()))?;
                fields.push((id, read_value(i, f.field_type, depth + 1)?));
                i.read_field_end()?;
            }
            i.read_struct_end()?;
            Value::Struct(fields)
        }
        TType::List => {
            let l = i.read_list_begin()?;
            let items = read_items(i, l.element_type, l.size, depth)?;
            i.read_list_end()?;
            Value::List(l.element_type, items)
        }
        TType::Set => {
            let s = i.read_set_begin()?;
            let items = read_items(i, s.element_type, s.size, depth)?;
            i.read_set_end()?;
            Value::Set(s.element_type, items)
        }
        TType::Map => {
            let m = i.read_map_begin()?;
            let mut entries = Vec::new();
            let (kt, vt) = match (m.key_type, m.value_type) {
                (Some(k), Some(v)) => (k, v),
                // Only an empty map may come without element types.
                _ => (TType::String, TType::String),
            };
            for _ in 0..m.size.max(0) {
                let k = read_value(i, kt, depth + 1)?;
                let v = read_value(i, vt, depth + 1)?;
                entries.push((k, v));
            }
            i.read_map_end()?;
            Value::Map(kt, vt, entries)
        }
        other => return Err(protocol_error(format!("unsupported wire type {other:?}"))),
    })
}

fn read_items(
    i: &mut dyn TInputProtocol,
    element: TType,
    size: i32,
    depth: usize,
) -> thrift::Result<Vec<Value>> {
    let mut items = Vec::new();
    for _ in 0..size.max(0) {
        items.push(read_value(i, element, depth + 1)?);
    }
    Ok(items)
}

/// A field of an IDL struct or argument list.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub id: i16,
    pub ty: IdlType,
    /// The IDL default (`= value`), if it is a literal of the field's type.
    pub default: Option<Value>,
}

/// The argument lists of a service's functions and the fields of its structs.
#[derive(Debug, Default)]
pub struct Idl {
    pub functions: HashMap<String, Vec<Field>>,
    pub structs: HashMap<String, Vec<Field>>,
}

impl Idl {
    /// The parsed [`HBASE_IDL`] (parsed once per process).
    pub fn hbase() -> Arc<Idl> {
        static IDL: OnceLock<Arc<Idl>> = OnceLock::new();
        IDL.get_or_init(|| {
            Arc::new(Idl::parse(HBASE_IDL).expect("the bundled Hbase.thrift parses"))
        })
        .clone()
    }

    /// Parses the typedefs, enums, structs and the (first) service of a Thrift IDL file.
    pub fn parse(text: &str) -> Result<Idl, String> {
        let tokens = tokenize(text)?;
        // Struct and enum names first, so that fields may name types declared later.
        let mut structs = HashSet::new();
        let mut enums = HashSet::new();
        for w in tokens.windows(2) {
            match w[0].as_str() {
                "struct" | "exception" | "union" => {
                    structs.insert(w[1].clone());
                }
                "enum" | "senum" => {
                    enums.insert(w[1].clone());
                }
                _ => {}
            }
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            typedefs: HashMap::new(),
            structs,
            enums,
        };
        let mut idl = Idl::default();
        while let Some(tok) = p.next() {
            match tok.as_str() {
                "typedef" => {
                    let ty = p.parse_type()?;
                    let name = p.ident()?;
                    p.typedefs.insert(name, ty);
                }
                "struct" | "exception" | "union" => {
                    let name = p.ident()?;
                    p.skip_annotations();
                    p.expect("{")?;
                    let fields = p.parse_fields("}")?;
                    idl.structs.insert(name, fields);
                }
                "service" => {
                    p.ident()?;
                    if p.peek() == Some("extends") {
                        p.next();
                        p.ident()?;
                    }
                    p.expect("{")?;
                    p.parse_functions(&mut idl)?;
                }
                _ => {}
            }
        }
        if idl.functions.is_empty() {
            return Err("no service functions found".into());
        }
        Ok(idl)
    }

    /// Adds every argument of `function` missing from `args` (an argument struct) with the
    /// zero value of its type, and the IDL defaults of absent fields inside struct
    /// arguments. Returns how many arguments were added. Unknown functions and non-struct
    /// values are left alone.
    pub fn fill_absent(&self, function: &str, args: &mut Value) -> usize {
        let (Some(sig), Value::Struct(fields)) = (self.functions.get(function), args) else {
            return 0;
        };
        let mut added = 0;
        for arg in sig {
            match fields.iter_mut().find(|(f, _)| *f == arg.id) {
                Some((_, v)) => self.fill_defaults(&arg.ty, v, 0),
                None => {
                    fields.push((arg.id, self.zero(&arg.ty)));
                    added += 1;
                }
            }
        }
        added
    }

    /// The zero value of `ty`; a struct gets the IDL defaults of its fields.
    pub fn zero(&self, ty: &IdlType) -> Value {
        let mut v = ty.zero();
        self.fill_defaults(ty, &mut v, 0);
        v
    }

    /// Adds IDL default values for absent struct fields, recursively (through containers).
    /// Values whose wire type does not match `ty` are left alone.
    fn fill_defaults(&self, ty: &IdlType, v: &mut Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match (ty, v) {
            (IdlType::Struct(name), Value::Struct(fields)) => {
                let Some(defs) = self.structs.get(name) else {
                    return;
                };
                for def in defs {
                    match fields.iter_mut().find(|(f, _)| *f == def.id) {
                        Some((_, v)) => self.fill_defaults(&def.ty, v, depth + 1),
                        None => {
                            if let Some(d) = &def.default {
                                fields.push((def.id, d.clone()));
                            }
                        }
                    }
                }
            }
            (IdlType::List(e), Value::List(_, items)) | (IdlType::Set(e), Value::Set(_, items)) => {
                for item in items {
                    self.fill_defaults(e, item, depth + 1);
                }
            }
            (IdlType::Map(kt, vt), Value::Map(_, _, entries)) => {
                for (k, v) in entries {
                    self.fill_defaults(kt, k, depth + 1);
                    self.fill_defaults(vt, v, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// A literal default (`= 3`, `= "NONE"`, `= 0x7fffffff`, `= 1` for a bool) as a value of `ty`.
fn literal(ty: &IdlType, token: &str) -> Option<Value> {
    let int = || -> Option<i64> {
        let (neg, digits) = match token.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, token.strip_prefix('+').unwrap_or(token)),
        };
        let v = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(hex) => i64::from_str_radix(hex, 16).ok()?,
            None => digits.parse().ok()?,
        };
        Some(if neg { -v } else { v })
    };
    Some(match ty {
        IdlType::Bool => Value::Bool(match token {
            "true" => true,
            "false" => false,
            _ => int()? != 0,
        }),
        IdlType::Byte => Value::I8(i8::try_from(int()?).ok()?),
        IdlType::I16 => Value::I16(i16::try_from(int()?).ok()?),
        IdlType::I32 => Value::I32(i32::try_from(int()?).ok()?),
        IdlType::I64 => Value::I64(int()?),
        IdlType::Double => Value::Double(token.parse().ok()?),
        IdlType::Binary => {
            let inner = token
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .or_else(|| token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))?;
            Value::Bytes(inner.as_bytes().to_vec())
        }
        _ => return None,
    })
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
    typedefs: HashMap<String, IdlType>,
    structs: HashSet<String>,
    enums: HashSet<String>,
}

impl Parser {
    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn peek_at(&self, n: usize) -> Option<&str> {
        self.tokens.get(self.pos + n).map(String::as_str)
    }

    fn expect(&mut self, want: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!("expected `{want}`, found {other:?}")),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(t)
                if t.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_') =>
            {
                Ok(t)
            }
            other => Err(format!("expected an identifier, found {other:?}")),
        }
    }

    fn parse_type(&mut self) -> Result<IdlType, String> {
        let name = self.ident()?;
        let ty = match name.as_str() {
            "bool" => IdlType::Bool,
            "byte" | "i8" => IdlType::Byte,
            "i16" => IdlType::I16,
            "i32" => IdlType::I32,
            "i64" => IdlType::I64,
            "double" => IdlType::Double,
            "string" | "binary" | "slist" => IdlType::Binary,
            "list" | "set" => {
                self.expect("<")?;
                let e = Box::new(self.parse_type()?);
                self.expect(">")?;
                if name == "list" {
                    IdlType::List(e)
                } else {
                    IdlType::Set(e)
                }
            }
            "map" => {
                self.expect("<")?;
                let k = Box::new(self.parse_type()?);
                self.expect(",")?;
                let v = Box::new(self.parse_type()?);
                self.expect(">")?;
                IdlType::Map(k, v)
            }
            other => {
                // Allow `module.Name` references by their last part.
                let short = other.rsplit('.').next().unwrap_or(other);
                if let Some(t) = self.typedefs.get(short) {
                    t.clone()
                } else if self.enums.contains(short) {
                    IdlType::I32
                } else if self.structs.contains(short) {
                    IdlType::Struct(short.to_string())
                } else {
                    return Err(format!("unknown type `{other}`"));
                }
            }
        };
        self.skip_annotations();
        Ok(ty)
    }

    /// Skips `( key = "value", ... )` type/field annotations.
    fn skip_annotations(&mut self) {
        if self.peek() == Some("(") && self.peek_at(2) == Some("=") {
            while let Some(t) = self.next() {
                if t == ")" {
                    break;
                }
            }
        }
    }

    /// Functions until the closing `}` of the service.
    fn parse_functions(&mut self, idl: &mut Idl) -> Result<(), String> {
        loop {
            match self.peek() {
                None => return Err("unterminated service".into()),
                Some("}") => {
                    self.next();
                    return Ok(());
                }
                Some("oneway") => {
                    self.next();
                }
                _ => {}
            }
            if self.peek() == Some("void") {
                self.next();
            } else {
                self.parse_type()?;
            }
            let name = self.ident()?;
            self.expect("(")?;
            let args = self.parse_fields(")")?;
            if self.peek() == Some("throws") {
                self.next();
                self.expect("(")?;
                self.parse_fields(")")?;
            }
            self.skip_annotations();
            if matches!(self.peek(), Some(",") | Some(";")) {
                self.next();
            }
            idl.functions.insert(name, args);
        }
    }

    /// Fields until `end`: `[id:] [required|optional] type name [= const] [,|;]`.
    fn parse_fields(&mut self, end: &str) -> Result<Vec<Field>, String> {
        let mut fields = Vec::new();
        let mut implicit: i16 = 0;
        loop {
            if self.peek() == Some(end) {
                self.next();
                return Ok(fields);
            }
            let id = if self.peek_at(1) == Some(":") {
                let id = self.next().unwrap_or_default();
                self.next();
                parse_int(&id).ok_or_else(|| format!("bad field id `{id}`"))?
            } else {
                implicit -= 1;
                implicit
            };
            if matches!(self.peek(), Some("required") | Some("optional")) {
                self.next();
            }
            let ty = self.parse_type()?;
            self.ident()?;
            let mut default = None;
            if self.peek() == Some("=") {
                self.next();
                if let Some(t) = self.peek() {
                    default = literal(&ty, t);
                }
                self.skip_const()?;
            }
            self.skip_annotations();
            if matches!(self.peek(), Some(",") | Some(";")) {
                self.next();
            }
            fields.push(Field { id, ty, default });
        }
    }

    fn skip_const(&mut self) -> Result<(), String> {
        let t = self.next().ok_or("missing constant")?;
        if t == "[" || t == "{" {
            let close = if t == "[" { "]" } else { "}" };
            let mut depth = 1;
            while depth > 0 {
                let t = self.next().ok_or("unterminated constant")?;
                if t == "[" || t == "{" {
                    depth += 1;
                } else if t == close || t == "]" || t == "}" {
                    depth -= 1;
                }
            }
        }
        Ok(())
    }
}

fn parse_int(s: &str) -> Option<i16> {
    if let Some(hex) = s.strip_prefix("0x") {
        i16::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Splits IDL text into identifiers/numbers, string literals and punctuation, dropping
/// `/* */`, `//` and `#` comments.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut j = i + 2;
            while j + 1 < chars.len() && !(chars[j] == '*' && chars[j + 1] == '/') {
                j += 1;
            }
            if j + 1 >= chars.len() {
                return Err("unterminated comment".into());
            }
            i = j + 2;
        } else if (c == '/' && chars.get(i + 1) == Some(&'/')) || c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += 1;
            }
            if j >= chars.len() {
                return Err("unterminated string literal".into());
            }
            tokens.push(chars[i..=j].iter().collect());
            i = j + 1;
        } else if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+') {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '.' | '-' | '+'))
            {
                j += 1;
            }
            tokens.push(chars[i..j].iter().collect());
            i = j;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    Ok(tokens)
}

/// A processor that fills absent arguments (see the module docs) before handing the call to
/// `inner`.
pub struct LenientProcessor<P> {
    inner: P,
    idl: Arc<Idl>,
}

impl<P: TProcessor> LenientProcessor<P> {
    pub fn new(inner: P, idl: Arc<Idl>) -> LenientProcessor<P> {
        LenientProcessor { inner, idl }
    }
}

impl<P: TProcessor> TProcessor for LenientProcessor<P> {
    fn process(
        &self,
        i_prot: &mut dyn TInputProtocol,
        o_prot: &mut dyn TOutputProtocol,
    ) -> thrift::Result<()> {
        let ident = i_prot.read_message_begin()?;
        let mut args = Value::read(i_prot, TType::Struct)?;
        i_prot.read_message_end()?;
        if matches!(
            ident.message_type,
            TMessageType::Call | TMessageType::OneWay
        ) {
            self.idl.fill_absent(&ident.name, &mut args);
        }
        let mut buf = Vec::new();
        {
            let mut out = TBinaryOutputProtocol::new(&mut buf, true);
            out.write_message_begin(&ident)?;
            args.write(&mut out)?;
            out.write_message_end()?;
            out.flush()?;
        }
        let mut input = TBinaryInputProtocol::new(&buf[..], true);
        self.inner.process(&mut input, o_prot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(idl: &Idl, f: &str) -> Vec<(i16, IdlType)> {
        idl.functions[f]
            .iter()
            .map(|a| (a.id, a.ty.clone()))
            .collect()
    }

    fn texts() -> IdlType {
        IdlType::Map(Box::new(IdlType::Binary), Box::new(IdlType::Binary))
    }

    #[test]
    fn parses_the_hbase_idl() {
        let idl = Idl::hbase();
        assert_eq!(
            sig(&idl, "checkAndPut"),
            vec![
                (1, IdlType::Binary),
                (2, IdlType::Binary),
                (3, IdlType::Binary),
                (5, IdlType::Binary),
                (6, IdlType::Struct("Mutation".into())),
                (7, texts()),
            ]
        );
        assert_eq!(sig(&idl, "getTableNames"), vec![]);
        assert_eq!(
            sig(&idl, "scannerGetList"),
            vec![(1, IdlType::I32), (2, IdlType::I32)]
        );
        assert_eq!(
            sig(&idl, "getRows"),
            vec![
                (1, IdlType::Binary),
                (2, IdlType::List(Box::new(IdlType::Binary))),
                (3, texts()),
            ]
        );
        assert_eq!(
            sig(&idl, "grant"),
            vec![(1, IdlType::Struct("TAccessControlEntity".into()))]
        );
        assert_eq!(sig(&idl, "getRegionInfo"), vec![(1, IdlType::Binary)]);
        assert_eq!(idl.functions.len(), 49, "the functions of service Hbase");
        let cd = &idl.structs["ColumnDescriptor"];
        assert_eq!(cd[1].default, Some(Value::I32(3)));
        assert_eq!(cd[2].default, Some(Value::Bytes(b"NONE".to_vec())));
        assert_eq!(cd[3].default, Some(Value::Bool(false)));
        assert_eq!(cd[8].default, Some(Value::I32(i32::MAX)));
        assert_eq!(cd[0].default, None);
        assert_eq!(idl.structs["Mutation"][3].default, Some(Value::Bool(true)));
    }

    #[test]
    fn fills_absent_arguments_and_round_trips() {
        let idl = Idl::hbase();
        let mut args = Value::Struct(vec![(1, Value::Bytes(b"t".to_vec()))]);
        assert_eq!(idl.fill_absent("getRow", &mut args), 2);
        let mut buf = Vec::new();
        args.write(&mut TBinaryOutputProtocol::new(&mut buf, true))
            .unwrap();
        let back = Value::read(
            &mut TBinaryInputProtocol::new(&buf[..], true),
            TType::Struct,
        )
        .unwrap();
        assert_eq!(
            back,
            Value::Struct(vec![
                (1, Value::Bytes(b"t".to_vec())),
                (2, Value::Bytes(vec![])),
                (3, Value::Map(TType::String, TType::String, vec![])),
            ])
        );
    }

    #[test]
    fn fills_struct_defaults_inside_lists() {
        let idl = Idl::hbase();
        let mut args = Value::Struct(vec![
            (1, Value::Bytes(b"t".to_vec())),
            (
                2,
                Value::List(
                    TType::Struct,
                    vec![Value::Struct(vec![
                        (1, Value::Bytes(b"f".to_vec())),
                        (2, Value::I32(1)),
                    ])],
                ),
            ),
        ]);
        assert_eq!(idl.fill_absent("createTable", &mut args), 0);
        let Value::Struct(fields) = &args else {
            panic!()
        };
        let Value::List(_, items) = &fields[1].1 else {
            panic!()
        };
        let Value::Struct(cd) = &items[0] else {
            panic!()
        };
        let get = |id: i16| cd.iter().find(|(f, _)| *f == id).map(|(_, v)| v.clone());
        assert_eq!(get(2), Some(Value::I32(1)), "present fields are kept");
        assert_eq!(get(3), Some(Value::Bytes(b"NONE".to_vec())));
        assert_eq!(get(5), Some(Value::Bytes(b"NONE".to_vec())));
        assert_eq!(get(9), Some(Value::I32(0x7fff_ffff)));
    }
}
