//! What reading one manifest file may cost, checked before and while it is parsed.
//!
//! The YAML parser (libyaml, through `serde_yaml_ng`) has no limit of its own on nesting, and its
//! scanner does work proportional to the flow nesting depth for every token: 200 KB of `{a: {a:`
//! costs it seconds, and each scan would pay again. Aliases are expanded while a document is
//! turned into values, so a few hundred bytes can ask for millions of values. So, for every file:
//!
//! 1. its size is checked before it is read ([`ParseLimits::max_file_bytes`]);
//! 2. a pre-scan ([`prescan`]) follows libyaml's scanner over the bytes, in time linear in their
//!    number and without building anything, and rejects nesting deeper than
//!    [`ParseLimits::max_depth`] before the parser sees the text;
//! 3. the values are built by [`ValueSeed`], which counts them (aliases expanded) against a budget
//!    of twice the file's tokens plus [`ParseLimits::max_alias_values`], and checks the depth again
//!    exactly (indentless block sequences are not visible to the pre-scan).
//!
//! The pre-scan mirrors libyaml's scanner (`scanner.c`: where tokens start and end, simple keys,
//! indentation, block scalars) wherever libyaml succeeds; where libyaml fails, libyaml stops
//! reading and what the pre-scan does past that point costs the parser nothing.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Limits on what reading one manifest file may cost. The defaults are generous for real
/// manifests: Kubernetes objects rarely nest beyond 30 levels, and the API server refuses
/// requests over 3 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest file read, in bytes; a larger file is rejected without being read.
    pub max_file_bytes: u64,
    /// Deepest nesting of sequences and mappings (a top-level mapping is 1 deep).
    pub max_depth: usize,
    /// How many values aliases may add to a file, beyond those written in it.
    pub max_alias_values: usize,
}

impl ParseLimits {
    /// Default for [`ParseLimits::max_file_bytes`]: 3 MiB, the API server's limit on a request.
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 3 * 1024 * 1024;
    /// Default for [`ParseLimits::max_depth`].
    pub const DEFAULT_MAX_DEPTH: usize = 64;
    /// Default for [`ParseLimits::max_alias_values`].
    pub const DEFAULT_MAX_ALIAS_VALUES: usize = 100_000;
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_alias_values: Self::DEFAULT_MAX_ALIAS_VALUES,
        }
    }
}

/// Which of the [`ParseLimits`] a file went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`ParseLimits::max_file_bytes`].
    FileSize,
    /// [`ParseLimits::max_depth`].
    Depth,
    /// [`ParseLimits::max_alias_values`].
    Aliases,
}

/// What the pre-scan learnt about a file that is within the depth limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prescan {
    /// Tokens in the file, as libyaml counts them (block collection starts included).
    pub tokens: usize,
    /// Aliases (`*name`) in the file.
    pub aliases: usize,
}

/// Where the pre-scan found nesting deeper than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep {
    /// 1-based document number.
    pub document: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Follow libyaml's scanner over `text` and fail where sequences and mappings (flow ones, and
/// block ones that are indented) nest deeper than `max_depth`. Linear in `text.len()`.
pub(super) fn prescan(text: &str, max_depth: usize) -> Result<Prescan, TooDeep> {
    let mut s = Scanner::new(text.as_bytes(), max_depth);
    s.run()?;
    Ok(Prescan {
        tokens: s.tokens,
        aliases: s.aliases,
    })
}

/// libyaml's "simple key": a token that may turn out to be a mapping key once `:` follows.
#[derive(Debug, Clone, Copy, Default)]
struct SimpleKey {
    possible: bool,
    line: usize,
    index: usize,
    column: usize,
}

/// The part of libyaml's scanner state that decides where tokens are.
struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    line: usize,
    /// In characters, as libyaml counts columns.
    column: usize,
    flow_level: usize,
    indent: isize,
    indents: Vec<isize>,
    simple_key_allowed: bool,
    /// One per flow level, plus the block level.
    simple_keys: Vec<SimpleKey>,
    max_depth: usize,
    document: usize,
    started: bool,
    tokens: usize,
    aliases: usize,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8], max_depth: usize) -> Self {
        // A byte order mark is not taken off by the reader (the encoding is given): the scanner
        // skips it as a character, at the start of any line.
        Scanner {
            b,
            pos: 0,
            line: 0,
            column: 0,
            flow_level: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: true,
            simple_keys: vec![SimpleKey::default()],
            max_depth,
            document: 1,
            started: false,
            tokens: 0,
            aliases: 0,
        }
    }

    /// The byte `k` bytes ahead; 0 past the end (libyaml pads its buffer with NULs, and stops at
    /// a NUL in the input).
    fn at(&self, k: usize) -> u8 {
        self.b.get(self.pos + k).copied().unwrap_or(0)
    }

    /// libyaml's `mark.index`: bytes read so far.
    fn index(&self) -> usize {
        self.pos
    }

    fn is_z(&self, k: usize) -> bool {
        self.at(k) == 0
    }

    fn is_blank(&self, k: usize) -> bool {
        matches!(self.at(k), b' ' | b'\t')
    }

    /// `\r`, `\n`, NEL, LS and PS, as libyaml's `IS_BREAK_AT`.
    fn is_break(&self, k: usize) -> bool {
        match self.at(k) {
            b'\r' | b'\n' => true,
            0xC2 => self.at(k + 1) == 0x85,
            0xE2 => self.at(k + 1) == 0x80 && matches!(self.at(k + 2), 0xA8 | 0xA9),
            _ => false,
        }
    }

    fn is_breakz(&self, k: usize) -> bool {
        self.is_break(k) || self.is_z(k)
    }

    fn is_blankz(&self, k: usize) -> bool {
        self.is_blank(k) || self.is_breakz(k)
    }

    fn is_alpha(&self, k: usize) -> bool {
        matches!(self.at(k), b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' | b'_' | b'-')
    }

    fn is_document_indicator(&self) -> bool {
        self.column == 0
            && (self.b[self.pos..].starts_with(b"---") || self.b[self.pos..].starts_with(b"..."))
            && self.is_blankz(3)
    }

    /// libyaml's `SKIP`: one character.
    fn skip(&mut self) {
        let width = match self.at(0) {
            0 => return,
            c if c < 0x80 => 1,
            c if c & 0xE0 == 0xC0 => 2,
            c if c & 0xF0 == 0xE0 => 3,
            _ => 4,
        };
        self.pos = (self.pos + width).min(self.b.len());
        self.column += 1;
    }

    /// libyaml's `SKIP_LINE`: one line break (`\r\n` is one).
    fn skip_line(&mut self) {
        if self.at(0) == b'\r' && self.at(1) == b'\n' {
            self.pos += 2;
        } else if self.is_break(0) {
            self.pos += match self.at(0) {
                b'\r' | b'\n' => 1,
                0xC2 => 2,
                _ => 3,
            };
        } else {
            return;
        }
        self.column = 0;
        self.line += 1;
    }

    fn depth(&self) -> usize {
        self.flow_level + self.indents.len()
    }

    fn check_depth(&self) -> Result<(), TooDeep> {
        if self.depth() > self.max_depth {
            return Err(TooDeep {
                document: self.document,
                line: self.line + 1,
                column: self.column + 1,
            });
        }
        Ok(())
    }

    fn top_key(&mut self) -> &mut SimpleKey {
        // Never empty: the block level's key is never popped.
        let last = self.simple_keys.len() - 1;
        &mut self.simple_keys[last]
    }

    fn save_simple_key(&mut self) {
        if self.simple_key_allowed {
            let key = SimpleKey {
                possible: true,
                line: self.line,
                index: self.index(),
                column: self.column,
            };
            *self.top_key() = key;
        }
    }

    fn remove_simple_key(&mut self) {
        self.top_key().possible = false;
    }

    fn roll_indent(&mut self, column: usize) -> Result<(), TooDeep> {
        if self.flow_level != 0 {
            return Ok(());
        }
        let column = column as isize;
        if self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            self.tokens += 1;
            self.check_depth()?;
        }
        Ok(())
    }

    fn unroll_indent(&mut self, column: isize) {
        if self.flow_level != 0 {
            return;
        }
        while self.indent > column {
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    fn run(&mut self) -> Result<(), TooDeep> {
        loop {
            self.scan_to_next_token();
            self.unroll_indent(self.column as isize);
            if self.is_z(0) {
                return Ok(());
            }
            self.tokens += 1;
            let c = self.at(0);
            if self.column == 0 && c == b'%' {
                // A directive: valid ones end with the line (or a comment).
                self.unroll_indent(-1);
                self.remove_simple_key();
                self.simple_key_allowed = false;
                while !self.is_breakz(0) {
                    self.skip();
                }
                continue;
            }
            if self.is_document_indicator() {
                self.unroll_indent(-1);
                self.remove_simple_key();
                self.simple_key_allowed = false;
                if c == b'-' {
                    if self.started {
                        self.document += 1;
                    }
                    self.started = true;
                }
                self.skip();
                self.skip();
                self.skip();
                continue;
            }
            self.started = true;
            let flow = self.flow_level != 0;
            match c {
                b'[' | b'{' => {
                    self.save_simple_key();
                    self.flow_level += 1;
                    self.simple_keys.push(SimpleKey::default());
                    self.check_depth()?;
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b']' | b'}' => {
                    self.remove_simple_key();
                    if self.flow_level != 0 {
                        self.flow_level -= 1;
                        self.simple_keys.pop();
                    }
                    self.simple_key_allowed = false;
                    self.skip();
                }
                b',' => {
                    self.remove_simple_key();
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b'-' if self.is_blankz(1) => {
                    if !flow {
                        self.roll_indent(self.column)?;
                    }
                    self.remove_simple_key();
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b'?' if flow || self.is_blankz(1) => {
                    if !flow {
                        self.roll_indent(self.column)?;
                    }
                    self.remove_simple_key();
                    self.simple_key_allowed = !flow;
                    self.skip();
                }
                b':' if flow || self.is_blankz(1) => {
                    self.fetch_value()?;
                }
                b'*' | b'&' => {
                    if c == b'*' {
                        self.aliases += 1;
                    }
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    self.skip();
                    while self.is_alpha(0) {
                        self.skip();
                    }
                }
                b'!' => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    self.scan_tag();
                }
                b'|' | b'>' if !flow => {
                    self.remove_simple_key();
                    self.simple_key_allowed = true;
                    self.scan_block_scalar();
                }
                b'\'' | b'"' => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    self.scan_flow_scalar(c == b'\'');
                }
                _ if self.starts_plain_scalar() => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    self.scan_plain_scalar();
                }
                // libyaml stops with "found character that cannot start any token": nothing
                // after this costs it anything. Go on, one character at a time.
                _ => self.skip(),
            }
        }
    }

    fn starts_plain_scalar(&self) -> bool {
        let c = self.at(0);
        !(self.is_blankz(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c))
            || (c == b'-' && !self.is_blank(1))
            || (self.flow_level == 0 && (c == b'?' || c == b':') && !self.is_blankz(1))
    }

    fn scan_to_next_token(&mut self) {
        loop {
            if self.column == 0 && self.b[self.pos..].starts_with(BOM) {
                self.skip();
            }
            while self.at(0) == b' '
                || ((self.flow_level != 0 || !self.simple_key_allowed) && self.at(0) == b'\t')
            {
                self.skip();
            }
            if self.at(0) == b'#' {
                while !self.is_breakz(0) {
                    self.skip();
                }
            }
            if !self.is_break(0) {
                return;
            }
            self.skip_line();
            if self.flow_level == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    fn fetch_value(&mut self) -> Result<(), TooDeep> {
        let (line, index) = (self.line, self.index());
        let key = *self.top_key();
        // libyaml drops a simple key once the line changes or 1024 characters went by.
        let possible = key.possible && key.line >= line && key.index + 1024 >= index;
        if possible {
            self.tokens += 1;
            self.roll_indent(key.column)?;
            self.top_key().possible = false;
            self.simple_key_allowed = false;
        } else {
            if self.flow_level == 0 {
                self.roll_indent(self.column)?;
            }
            self.simple_key_allowed = self.flow_level == 0;
        }
        self.skip();
        Ok(())
    }

    fn is_uri_char(&self, verbatim: bool) -> bool {
        self.is_alpha(0)
            || b";/?:@&=+$.%!~*'()".contains(&self.at(0))
            || (verbatim && matches!(self.at(0), b',' | b'[' | b']'))
    }

    /// `!<uri>`, or `!handle!suffix` / `!suffix`: libyaml's `yaml_parser_scan_tag`.
    fn scan_tag(&mut self) {
        if self.at(1) == b'<' {
            self.skip();
            self.skip();
            while self.at(0) != 0 && self.is_uri_char(true) {
                self.skip();
            }
            if self.at(0) == b'>' {
                self.skip();
            }
        } else {
            // The handle (`!`, alphanumerics, `!`) and the suffix are all URI characters.
            self.skip();
            while self.at(0) != 0 && self.is_uri_char(false) {
                self.skip();
            }
        }
    }

    /// libyaml's `yaml_parser_scan_block_scalar`.
    fn scan_block_scalar(&mut self) {
        self.skip();
        let mut increment: isize = 0;
        let c = self.at(0);
        if c == b'+' || c == b'-' {
            self.skip();
            if matches!(self.at(0), b'1'..=b'9') {
                increment = isize::from(self.at(0) - b'0');
                self.skip();
            }
        } else if matches!(c, b'1'..=b'9') {
            increment = isize::from(c - b'0');
            self.skip();
            if matches!(self.at(0), b'+' | b'-') {
                self.skip();
            }
        }
        while self.is_blank(0) {
            self.skip();
        }
        if self.at(0) == b'#' {
            while !self.is_breakz(0) {
                self.skip();
            }
        }
        if self.is_break(0) {
            self.skip_line();
        }
        let mut indent: isize = 0;
        if increment != 0 {
            indent = if self.indent >= 0 {
                self.indent + increment
            } else {
                increment
            };
        }
        self.block_scalar_breaks(&mut indent);
        while self.column as isize == indent && !self.is_z(0) {
            while !self.is_breakz(0) {
                self.skip();
            }
            self.skip_line();
            self.block_scalar_breaks(&mut indent);
        }
    }

    /// libyaml's `yaml_parser_scan_block_scalar_breaks`: empty lines, and the indentation of the
    /// first non-empty one when `indent` is not known yet.
    fn block_scalar_breaks(&mut self, indent: &mut isize) {
        let mut max_indent: isize = 0;
        loop {
            while (*indent == 0 || (self.column as isize) < *indent) && self.at(0) == b' ' {
                self.skip();
            }
            max_indent = max_indent.max(self.column as isize);
            if !self.is_break(0) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
    }

    /// libyaml's `yaml_parser_scan_flow_scalar`: a single- or double-quoted scalar.
    fn scan_flow_scalar(&mut self, single: bool) {
        let quote = if single { b'\'' } else { b'"' };
        self.skip();
        loop {
            if self.is_document_indicator() || self.is_z(0) {
                // libyaml fails here.
                return;
            }
            while !self.is_blankz(0) {
                let c = self.at(0);
                if single && c == b'\'' && self.at(1) == b'\'' {
                    self.skip();
                    self.skip();
                } else if c == quote {
                    break;
                } else if !single && c == b'\\' && self.is_break(1) {
                    self.skip();
                    self.skip_line();
                    break;
                } else if !single && c == b'\\' {
                    let code_length = match self.at(1) {
                        b'x' => 2,
                        b'u' => 4,
                        b'U' => 8,
                        b'0' | b'a' | b'b' | b't' | b'\t' | b'n' | b'v' | b'f' | b'r' | b'e'
                        | b' ' | b'"' | b'/' | b'\\' | b'N' | b'_' | b'L' | b'P' => 0,
                        // libyaml fails on an unknown escape.
                        _ => return,
                    };
                    self.skip();
                    self.skip();
                    for _ in 0..code_length {
                        if !self.at(0).is_ascii_hexdigit() {
                            return;
                        }
                        self.skip();
                    }
                } else {
                    self.skip();
                }
            }
            if self.at(0) == quote {
                self.skip();
                return;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    self.skip();
                } else {
                    self.skip_line();
                }
            }
        }
    }

    /// libyaml's `yaml_parser_scan_plain_scalar`.
    fn scan_plain_scalar(&mut self) {
        let indent = self.indent + 1;
        let mut leading_blanks = false;
        loop {
            if self.is_document_indicator() || self.at(0) == b'#' {
                break;
            }
            while !self.is_blankz(0) {
                let c = self.at(0);
                if self.flow_level != 0
                    && c == b':'
                    && matches!(self.at(1), b',' | b'?' | b'[' | b']' | b'{' | b'}')
                {
                    // libyaml fails with "found unexpected ':'".
                    break;
                }
                if (c == b':' && self.is_blankz(1))
                    || (self.flow_level != 0 && matches!(c, b',' | b'[' | b']' | b'{' | b'}'))
                {
                    break;
                }
                self.skip();
            }
            if !(self.is_blank(0) || self.is_break(0)) {
                break;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    self.skip();
                } else {
                    self.skip_line();
                    leading_blanks = true;
                }
            }
            if self.flow_level == 0 && (self.column as isize) < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
    }
}

/// Counts values as they are built, against the depth limit and the value budget.
#[derive(Debug)]
pub(super) struct Budget {
    values: usize,
    max_values: usize,
    max_depth: usize,
    /// Set when a limit stopped the parse (the parser's error then only carries the position).
    pub exceeded: Option<Limit>,
}

impl Budget {
    /// A budget of `max_values` values, nested at most `max_depth` deep.
    pub fn new(max_values: usize, max_depth: usize) -> Self {
        Budget {
            values: 0,
            max_values,
            max_depth,
            exceeded: None,
        }
    }

    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.values += 1;
        if self.values > self.max_values {
            self.exceeded = Some(Limit::Aliases);
            return Err(E::custom("too many values"));
        }
        Ok(())
    }

    fn enter<E: de::Error>(&mut self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            self.exceeded = Some(Limit::Depth);
            return Err(E::custom("nested too deep"));
        }
        Ok(())
    }
}

/// Builds a [`serde_json::Value`] exactly as its own `Deserialize` does, within a [`Budget`].
pub(super) struct ValueSeed<'b> {
    budget: &'b mut Budget,
    /// Depth of the value being built (a top-level mapping is at depth 1).
    depth: usize,
}

impl<'b> ValueSeed<'b> {
    /// A seed for a document's top-level value.
    pub fn new(budget: &'b mut Budget) -> Self {
        ValueSeed { budget, depth: 1 }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.budget.count()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        serde::Deserialize::deserialize(de::value::I128Deserializer::<E>::new(v)).map(Value::Number)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        serde::Deserialize::deserialize(de::value::U128Deserializer::<E>::new(v)).map(Value::Number)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.enter(self.depth)?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            budget: &mut *self.budget,
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.enter(self.depth)?;
        let mut out = Map::new();
        let mut first = true;
        while let Some(k) = map.next_key_seed(KeySeed {
            budget: &mut *self.budget,
            first,
        })? {
            first = false;
            let v = map.next_value_seed(ValueSeed {
                budget: &mut *self.budget,
                depth: self.depth + 1,
            })?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key, read as `serde_json::Value` reads one (the first as its `KeyClassifier`, the
/// others as `String`s).
struct KeySeed<'b> {
    budget: &'b mut Budget,
    first: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        self.budget.count()?;
        if self.first {
            deserializer.deserialize_str(self)
        } else {
            deserializer.deserialize_string(self)
        }
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.first {
            "a string key"
        } else {
            "a string"
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<String, E> {
        if self.first {
            return Err(E::invalid_type(de::Unexpected::Bytes(v), &self));
        }
        std::str::from_utf8(v)
            .map(str::to_owned)
            .map_err(|_| E::invalid_value(de::Unexpected::Bytes(v), &self))
    }
}

#[cfg(test)]
mod tests {
    //! The pre-scan must find exactly the nesting libyaml finds: generated documents mixing flow
    //! and block collections, every scalar style and comments, their text full of brackets,
    //! quotes and `#`, are parsed and pre-scanned, and the depths compared.

    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone)]
    enum Scalar {
        Plain(String),
        Single(String),
        Double(String),
        /// Lines, header (`|`, `|-`, `|2` or `>`), whether an empty line comes first.
        Literal(Vec<String>, &'static str, bool),
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Style {
        Flow,
        Block,
        /// A block sequence as a mapping value, at the key's indentation.
        Indentless,
    }

    #[derive(Debug, Clone)]
    enum Node {
        Scalar(Scalar),
        Seq(Vec<Node>, Style),
        Map(Vec<(Scalar, Node)>, Style),
    }

    const TRICKY: &str = "ab z[]{},:#&*!|>'\"%@`-?é";

    fn tricky(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(TRICKY.chars().collect::<Vec<_>>()),
            0..max,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    /// Plain scalars that stay strings and stay plain: `x`, then letters and indicators, `:` only
    /// before a letter, no spaces.
    fn plain() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                "a", "b", "[", "]", "{", "}", "#", "-", ":c", "'", "\"", "!",
            ]),
            0..6,
        )
        .prop_map(|p| format!("x{}", p.concat()))
    }

    fn literal_line() -> impl Strategy<Value = String> {
        tricky(12).prop_map(|l| format!("L{}", l.trim_end()))
    }

    /// Lines of a literal block scalar: the first at the block's indentation, the others at it or
    /// deeper, or empty.
    fn literal() -> impl Strategy<Value = Vec<String>> {
        (
            literal_line(),
            proptest::collection::vec((0..3usize, literal_line(), any::<bool>()), 0..3),
        )
            .prop_map(|(first, rest)| {
                let mut lines: Vec<String> = std::iter::once(first)
                    .chain(rest.into_iter().map(|(i, l, empty)| {
                        if empty {
                            String::new()
                        } else {
                            format!("{}{l}", " ".repeat(i))
                        }
                    }))
                    .collect();
                // Trailing empty lines are chomped: keep the value simple.
                while lines.last().is_some_and(String::is_empty) {
                    lines.pop();
                }
                lines
            })
    }

    /// The value of a literal block scalar with `header` (a folded one is written only when its
    /// folding changes nothing: one line).
    fn literal_value(lines: &[String], header: &str, blank: bool) -> String {
        let mut s = if blank {
            "\n".to_string()
        } else {
            String::new()
        };
        if header == "|2" {
            s.push(' ');
        }
        s.push_str(&lines.join("\n"));
        if header != "|-" {
            s.push('\n');
        }
        s
    }

    fn scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            plain().prop_map(Scalar::Plain),
            tricky(10).prop_map(Scalar::Single),
            (tricky(10), any::<bool>()).prop_map(|(s, nl)| Scalar::Double(if nl {
                format!("{s}\n\t{s}")
            } else {
                s
            })),
            (
                literal(),
                proptest::sample::select(vec!["|", "|-", "|2", ">"]),
                any::<bool>()
            )
                .prop_map(|(lines, header, blank)| Scalar::Literal(lines, header, blank)),
        ]
    }

    fn style() -> impl Strategy<Value = Style> {
        prop_oneof![
            Just(Style::Flow),
            Just(Style::Block),
            Just(Style::Indentless)
        ]
    }

    fn node() -> impl Strategy<Value = Node> {
        scalar()
            .prop_map(Node::Scalar)
            .prop_recursive(8, 64, 4, |inner| {
                prop_oneof![
                    (proptest::collection::vec(inner.clone(), 0..4), style())
                        .prop_map(|(items, s)| Node::Seq(items, s)),
                    (proptest::collection::vec((scalar(), inner), 0..4), style())
                        .prop_map(|(entries, s)| Node::Map(entries, s)),
                ]
            })
    }

    fn key_text(k: &Scalar, i: usize) -> (String, String) {
        // Keys stay on one line and are unique within their mapping.
        match k {
            Scalar::Single(s) => {
                let s = format!("k{i}{s}");
                (format!("'{}'", s.replace('\'', "''")), s)
            }
            Scalar::Double(s) => {
                let s = format!("k{i}{}", s.replace(['\n', '\t'], ""));
                (double(&s), s)
            }
            _ => (format!("k{i}"), format!("k{i}")),
        }
    }

    fn double(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn scalar_value(s: &Scalar, flow: bool) -> (String, Value) {
        match s {
            Scalar::Plain(p) => {
                let p: String = if flow {
                    p.chars().filter(|c| !"[]{},".contains(*c)).collect()
                } else {
                    p.clone()
                };
                (p.clone(), Value::String(p))
            }
            Scalar::Single(s) => (
                format!("'{}'", s.replace('\'', "''")),
                Value::String(s.clone()),
            ),
            Scalar::Double(s) => (double(s), Value::String(s.clone())),
            Scalar::Literal(lines, header, blank) => {
                let s = literal_value(lines, header, *blank);
                (double(&s), Value::String(s))
            }
        }
    }

    const COMMENT: &str = " # ]]}} [[{{ \"' |";

    /// Write `n` in flow style; its value.
    fn flow(n: &Node, out: &mut String) -> Value {
        match n {
            Node::Scalar(s) => {
                let (text, v) = scalar_value(s, true);
                out.push_str(&text);
                v
            }
            Node::Seq(items, _) => {
                out.push('[');
                let mut vs = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    vs.push(flow(it, out));
                }
                out.push(']');
                Value::Array(vs)
            }
            Node::Map(entries, _) => {
                out.push('{');
                let mut m = Map::new();
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let (kt, kv) = key_text(k, i);
                    out.push_str(&kt);
                    out.push_str(": ");
                    m.insert(kv, flow(v, out));
                }
                out.push('}');
                Value::Object(m)
            }
        }
    }

    /// Write `n` as the value after `key:` or `-` of an entry indented `indent`, up to the end of
    /// its last line; its value.
    fn block_value(n: &Node, indent: usize, in_map: bool, out: &mut String) -> Value {
        let pad = |k: usize| " ".repeat(k);
        match n {
            Node::Scalar(Scalar::Literal(lines, header, blank)) => {
                let header = if *header == ">" && (lines.len() > 1 || *blank) {
                    "|"
                } else {
                    header
                };
                out.push(' ');
                out.push_str(header);
                out.push_str(COMMENT);
                out.push('\n');
                if *blank {
                    out.push('\n');
                }
                for (i, l) in lines.iter().enumerate() {
                    if !l.is_empty() {
                        out.push_str(&pad(indent + 2));
                        if i == 0 && header == "|2" {
                            out.push(' ');
                        }
                    }
                    out.push_str(l);
                    out.push('\n');
                }
                Value::String(literal_value(lines, header, *blank))
            }
            Node::Scalar(_) | Node::Seq(_, Style::Flow) | Node::Map(_, Style::Flow) => {
                out.push(' ');
                let v = flow(n, out);
                out.push_str(COMMENT);
                out.push('\n');
                v
            }
            Node::Seq(items, _) if items.is_empty() => {
                out.push_str(" []\n");
                Value::Array(Vec::new())
            }
            Node::Map(entries, _) if entries.is_empty() => {
                out.push_str(" {}\n");
                Value::Object(Map::new())
            }
            Node::Seq(items, style) => {
                out.push_str(COMMENT);
                out.push('\n');
                let indent = if in_map && *style == Style::Indentless {
                    indent
                } else {
                    indent + 2
                };
                block_seq(items, indent, out)
            }
            Node::Map(entries, _) => {
                out.push('\n');
                block_map(entries, indent + 2, out)
            }
        }
    }

    fn block_seq(items: &[Node], indent: usize, out: &mut String) -> Value {
        let mut vs = Vec::new();
        for it in items {
            out.push_str(&" ".repeat(indent));
            out.push('-');
            vs.push(block_value(it, indent, false, out));
        }
        Value::Array(vs)
    }

    fn block_map(entries: &[(Scalar, Node)], indent: usize, out: &mut String) -> Value {
        let mut m = Map::new();
        for (i, (k, v)) in entries.iter().enumerate() {
            out.push_str(&" ".repeat(indent));
            out.push_str(COMMENT.trim_start());
            out.push('\n');
            let (kt, kv) = key_text(k, i);
            out.push_str(&" ".repeat(indent));
            out.push_str(&kt);
            out.push(':');
            m.insert(kv, block_value(v, indent, true, out));
        }
        Value::Object(m)
    }

    fn document(n: &Node) -> (String, Value) {
        let mut out = String::new();
        let v = match n {
            Node::Seq(items, Style::Block | Style::Indentless) if !items.is_empty() => {
                block_seq(items, 0, &mut out)
            }
            Node::Map(entries, Style::Block | Style::Indentless) if !entries.is_empty() => {
                block_map(entries, 0, &mut out)
            }
            _ => {
                let v = flow(n, &mut out);
                out.push('\n');
                v
            }
        };
        (out, v)
    }

    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn values(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(values).sum::<usize>(),
            Value::Object(m) => 1 + m.values().map(|v| 1 + values(v)).sum::<usize>(),
            _ => 1,
        }
    }

    fn indentless(n: &Node, in_map: bool) -> bool {
        match n {
            Node::Scalar(_) => false,
            Node::Seq(items, s) => {
                (in_map && *s == Style::Indentless && !items.is_empty())
                    || items.iter().any(|i| indentless(i, false))
            }
            Node::Map(entries, s) => entries
                .iter()
                .any(|(_, v)| indentless(v, *s != Style::Flow)),
        }
    }

    fn bounded(text: &str, max_values: usize, max_depth: usize) -> Result<Value, Option<Limit>> {
        let mut budget = Budget::new(max_values, max_depth);
        let doc = serde_yaml_ng::Deserializer::from_str(text).next().unwrap();
        ValueSeed::new(&mut budget)
            .deserialize(doc)
            .map_err(|_| budget.exceeded)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prescan_finds_the_nesting_libyaml_finds(n in node()) {
            let (text, expected) = document(&n);
            let parsed: Value = serde_yaml_ng::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(&parsed, &expected, "{}", text);
            let d = depth(&expected);
            let scanned = prescan(&text, d).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            // Block sequences at their key's indentation are not seen by the pre-scan; the value
            // seed counts those levels.
            if d > 0 && !indentless(&n, false) {
                prop_assert!(prescan(&text, d - 1).is_err(), "depth {} not found in\n{}", d, text);
            }
            prop_assert_eq!(scanned.aliases, 0);
            // Without aliases, fewer values than twice the tokens (the alias budget's base).
            prop_assert!(values(&expected) <= 2 * scanned.tokens, "{} values, {} tokens\n{}", values(&expected), scanned.tokens, text);
            // The bounded value is serde_json's own, and the depth limit is exact.
            prop_assert_eq!(bounded(&text, usize::MAX, d), Ok(expected));
            if d > 0 {
                prop_assert_eq!(bounded(&text, usize::MAX, d - 1), Err(Some(Limit::Depth)));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Random text made of YAML's own pieces: whatever libyaml reads, the pre-scan finds no
        /// deeper nesting than the values have.
        #[test]
        fn prescan_never_rejects_what_libyaml_reads(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "[", "]", "{", "}", ", ", ",", ": ", ":", "- ", "-", "? ", "a", "b c", "x[",
                    "y{", "'q[ '", "'", "\"d{ \\\" ]\"", "\"", " # [{ ", "#", "|", "|-\n", ">",
                    "\n", "\n  ", "\n    ", "\n- ", "\n  - ", "&a ", "!t ", "!<[x]> ", "\t",
                    "\u{85}", "---\n", "...\n", "%YAML 1.1\n",
                ]),
                0..40,
            ),
        ) {
            let text = pieces.concat();
            let docs: Result<Vec<Value>, _> = serde_yaml_ng::Deserializer::from_str(&text)
                .map(Value::deserialize)
                .collect();
            if let Ok(docs) = docs {
                let d = docs.iter().map(depth).max().unwrap_or(0);
                prop_assert!(prescan(&text, d).is_ok(), "{:?} is {} deep", text, d);
            }
        }
    }

    #[test]
    fn nothing_hides_nesting_from_the_prescan() {
        // After each of these, a key holding nested sequences: libyaml reads them (checked at a
        // small depth), and the pre-scan must see them (checked at a large one).
        let prefixes = [
            "a: b[[[ # [[[\n",
            "a: '[[[''[[['\n",
            "a: \"[[[\\\"[[[\\\\\"\n",
            "a: \"multi\n  line [[[ \"\n",
            "a: \"\\x41\\u0042\\U00000043 [\"\n",
            "a: 'it''s ['\n",
            "a: |\n  [[[\n  {{{\n   b: [[[\nc: d\n",
            "a: >-\n    [[[\n\n    [[[\nb: x\n",
            "a: |2\n     [[[\n    c\n",
            "a: |+\n  [[[\n\n",
            "a: !<tag:[[[]> x\n",
            "a: !!str x[\n",
            "a: &anc x\nb: *anc\n",
            "%TAG ! tag:x,2000:[[[\n---\na: b\n",
            "a: [x, 'y]', \"z}\", {k: v}, x:y]\n",
            "a: x:y#z[\n",
            "a: b\r\nc: d\r\n",
            "a: b\u{85}c: d\n",
            "? complex [\n: value {\n",
            "a:\n- b\n- c\n",
            "a: b # comment with 'quote \"\n",
            "a:\n  b:\n    c: [\n      d,\n      e]\n",
        ];
        for prefix in prefixes {
            let small = format!("{prefix}bomb: {}x{}\n", "[".repeat(3), "]".repeat(3));
            let parsed: Value =
                serde_yaml_ng::from_str(&small).unwrap_or_else(|e| panic!("{e}: {small:?}"));
            assert_eq!(depth(&parsed["bomb"]), 3, "{small:?}");
            let big = format!("{prefix}bomb: {}x{}\n", "[".repeat(100), "]".repeat(100));
            let e = prescan(&big, 64).unwrap_err();
            // NEL breaks lines for libyaml, not for `str::lines`.
            let lines = big.lines().count() + big.matches('\u{85}').count();
            assert_eq!(e.line, lines, "{big:?}");
        }
        // libyaml reads the whole line before it finds the mapping broken: the block scalar ends
        // at column 1, as the byte order mark puts `a` at column 1.
        let text = format!("\u{feff}a: |\n {}", "[".repeat(100));
        assert_eq!(prescan(&text, 64).unwrap_err().line, 2);
    }

    #[test]
    fn prescan_counts_documents_lines_and_columns() {
        let text = "# c\n---\na: [1]\n---\n\n b: [[[[1]]]]\n";
        assert_eq!(
            prescan(text, 3),
            Err(TooDeep {
                document: 2,
                line: 6,
                column: 7
            })
        );
        let text = "a: 1\n---\n[[[[1]]]]\n";
        assert_eq!(prescan(text, 3).unwrap_err().document, 2);
        // A byte order mark counts as a column, as libyaml counts it.
        let text = "\u{feff}[[[x]]]";
        assert_eq!(prescan(text, 3).map(|p| p.aliases), Ok(0));
        assert_eq!(prescan(text, 2).unwrap_err().column, 4);
    }

    #[test]
    fn prescan_skips_what_is_not_a_collection() {
        let cases = [
            // Brackets in comments, quoted, plain and block scalars, tags and directives.
            "a: b[[[ # [[[\n",
            "a: '[[[''[[['\n",
            "a: \"[[[\\\"[[[\"\n",
            "a: |\n  [[[\n  {{{\n   b: [[[\nc: d\n",
            "a: >-\n    [[[\n\n    [[[\nb: x\n",
            "a: !<tag:[[[]> x\n",
            "%TAG ! tag:x,2000:[[[\n--- a\n",
            "[a: b, 'c': d, \"e\":f, g]\n",
            "- a\n- b: |2\n     [[[\n    c\n- d\n",
        ];
        for text in cases {
            let parsed: Value =
                serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let d = depth(&parsed);
            assert!(prescan(text, d).is_ok(), "{text:?} is {d} deep");
        }
    }
}
