//! Reading the config and registry files into their `file` structs with *every* schema problem
//! reported (unknown fields, wrong types), not just the first one serde stops at.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use toml_edit::{ImDocument, Item, Key, TableLike, Value};

use crate::error::{line_column, ConfigError};
use crate::file::{RegistryFile, TenantFile};

/// More than this many problems in one file means something else is wrong (the wrong file).
const MAX_PROBLEMS: usize = 50;

/// After each problem the offending entry is blanked out (offsets kept, so every location
/// stays true) and the text is read again, until it reads or the next problem cannot be
/// skipped over.
pub(crate) fn from_toml<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, Vec<ConfigError>> {
    let mut remaining = text.to_owned();
    let mut errors = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    // Each pass blanks one more entry, so this ends anyway; the bound keeps it short.
    for _ in 0..2 * MAX_PROBLEMS {
        let e = match toml::from_str::<T>(&remaining) {
            Ok(file) if errors.is_empty() => return Ok(file),
            Ok(_) => return Err(errors),
            Err(e) => e,
        };
        let span = e.span().unwrap_or(0..0);
        // A missing field is reported at the table lacking it. When that field was skipped
        // over for its bad value, the news was already told.
        let missing = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let already_told = missing.is_some_and(|field| {
            skipped
                .iter()
                .any(|s| s.key == field && s.table_start == span.start)
        });
        if !already_told {
            let (line, column) = line_column(text, span.start);
            errors.push(ConfigError::Parse {
                file: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            });
        }
        // The offending entry, or the table lacking a field, is skipped over next; never the
        // whole document (which is what an empty span points at).
        let next = (!span.is_empty())
            .then(|| blank_entry(&remaining, span.start))
            .flatten();
        match next {
            Some((rest, entry)) if errors.len() < MAX_PROBLEMS => {
                remaining = rest;
                skipped.push(entry);
            }
            _ => return Err(errors),
        }
    }
    Err(errors)
}

/// An entry blanked out: its key, and where the table holding it starts (where serde reports
/// a field missing from that table).
struct Skipped {
    key: String,
    table_start: usize,
}

/// The registry in one pass when it reads. Otherwise each tenant entry is read on its own, so
/// every bad entry is reported (hand edits make them; the admin API never writes one).
pub(crate) fn registry_from_json<'a>(
    path: &Path,
    text: &'a str,
) -> Result<RegistryFile<'a>, Vec<ConfigError>> {
    let whole = match serde_json::from_str(text) {
        Ok(file) => return Ok(file),
        Err(e) => e,
    };
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entries<'a> {
        #[serde(borrow)]
        tenants: Vec<&'a RawValue>,
    }
    let entry_errors: Vec<ConfigError> = serde_json::from_str::<Entries<'_>>(text)
        .map(|entries| {
            entries
                .tenants
                .iter()
                .filter_map(|entry| {
                    let e = serde_json::from_str::<TenantFile<'_>>(entry.get()).err()?;
                    // The entry borrows from `text`: its address gives its offset.
                    let offset = entry.get().as_ptr() as usize - text.as_ptr() as usize;
                    Some(json_error(path, text, offset, &e))
                })
                .collect()
        })
        .unwrap_or_default();
    if entry_errors.is_empty() {
        // The file's own shape is wrong (not an object, no `tenants` list, a stray field).
        return Err(vec![json_error(path, text, 0, &whole)]);
    }
    Err(entry_errors)
}

/// `e` met while reading the part of `text` that starts at byte `offset`.
fn json_error(path: &Path, text: &str, offset: usize, e: &serde_json::Error) -> ConfigError {
    let (line, column) = line_column(text, offset);
    let message = e.to_string();
    // serde_json appends its own position, which is relative to the part read.
    let message = message
        .rsplit_once(" at line ")
        .map_or(&*message, |(m, _)| m);
    ConfigError::Parse {
        file: path.to_owned(),
        line: line + e.line().saturating_sub(1),
        column: if e.line() <= 1 {
            column + e.column().saturating_sub(1)
        } else {
            e.column()
        },
        message: message.to_owned(),
    }
}

/// `text` without the entry (key and value, a whole table, or one table of an array of tables)
/// that holds byte `at`. `None` when no entry holds it, or when the text would no longer be TOML
/// without it.
fn blank_entry(text: &str, at: usize) -> Option<(String, Skipped)> {
    let document = ImDocument::parse(text).ok()?;
    let mut spans = Vec::new();
    let entry = entry_at(document.as_table(), 0, at, &mut spans)?;
    let mut bytes = text.as_bytes().to_vec();
    for span in spans {
        let span = with_separating_comma(&bytes, span);
        for byte in &mut bytes[span] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Spans lie on character boundaries, so blanking whole spans keeps the text UTF-8.
    let blanked = String::from_utf8(bytes).ok()?;
    ImDocument::parse(blanked.as_str()).ok()?;
    Some((blanked, entry))
}

/// The innermost entry of `table` (which starts at byte `table_start`) holding byte `at`, with
/// every span it occupies pushed to `spans`.
fn entry_at(
    table: &dyn TableLike,
    table_start: usize,
    at: usize,
    spans: &mut Vec<Range<usize>>,
) -> Option<Skipped> {
    for (name, item) in table.iter() {
        let Some((key, _)) = table.get_key_value(name) else {
            continue;
        };
        let inner = tables_in(item).find_map(|(inner, span)| {
            let start = span.map_or(table_start, |s| s.start);
            entry_at(inner, start, at, spans)
        });
        if inner.is_some() {
            return inner;
        }
        let skipped = Skipped {
            key: name.to_owned(),
            table_start,
        };
        // One table of an array of tables, not the whole array.
        if let Item::ArrayOfTables(tables) = item {
            let element = tables
                .iter()
                .find(|t| t.span().is_some_and(|s| s.contains(&at)));
            if let Some(element) = element {
                spans.extend(element.span());
                children_spans(element, spans);
                return Some(skipped);
            }
        }
        let mut own = Vec::new();
        entry_spans(key, item, &mut own);
        if own.iter().any(|span| span.contains(&at)) {
            spans.extend(own);
            return Some(skipped);
        }
    }
    None
}

/// Every span `key = item` occupies: the pair itself for a value, and for a table its header
/// and each of its entries (which need not be next to each other).
fn entry_spans(key: &Key, item: &Item, spans: &mut Vec<Range<usize>>) {
    match item {
        Item::Value(value) => {
            if let (Some(key), Some(value)) = (key.span(), value.span()) {
                spans.push(key.start..value.end);
            }
        }
        _ => {
            spans.extend(key.span());
            for (table, header) in tables_in(item) {
                spans.extend(header);
                children_spans(table, spans);
            }
        }
    }
}

fn children_spans(table: &dyn TableLike, spans: &mut Vec<Range<usize>>) {
    for (name, child) in table.iter() {
        if let Some((child_key, _)) = table.get_key_value(name) {
            entry_spans(child_key, child, spans);
        }
    }
}

/// A table and its span.
type SpannedTable<'a> = (&'a dyn TableLike, Option<Range<usize>>);

/// The tables directly inside `item`, each with its span (implicit tables have no place of
/// their own): itself, the tables of an array of tables, and inline tables (also inside an
/// array, as in `sources = [ { host = ... } ]`).
fn tables_in(item: &Item) -> Box<dyn Iterator<Item = SpannedTable<'_>> + '_> {
    match item {
        Item::Table(table) => Box::new(std::iter::once((table as &dyn TableLike, table.span()))),
        Item::ArrayOfTables(tables) => {
            Box::new(tables.iter().map(|t| (t as &dyn TableLike, t.span())))
        }
        Item::Value(Value::InlineTable(table)) => {
            Box::new(std::iter::once((table as &dyn TableLike, table.span())))
        }
        Item::Value(Value::Array(values)) => Box::new(
            values
                .iter()
                .filter_map(Value::as_inline_table)
                .map(|t| (t as &dyn TableLike, t.span())),
        ),
        _ => Box::new(std::iter::empty()),
    }
}

/// Inside an inline table, an entry leaves a comma that must go with it: the one after it, or
/// for the last entry the one before it.
fn with_separating_comma(bytes: &[u8], span: Range<usize>) -> Range<usize> {
    let after = bytes[span.end..].iter().position(|b| !b" \t".contains(b));
    if let Some(offset) = after.filter(|&o| bytes[span.end + o] == b',') {
        return span.start..span.end + offset + 1;
    }
    let before = bytes[..span.start]
        .iter()
        .rposition(|b| !b" \t".contains(b));
    match before.filter(|&i| bytes[i] == b',') {
        Some(comma) if bytes[span.end..].iter().find(|b| !b" \t".contains(b)) == Some(&b'}') => {
            comma..span.end
        }
        _ => span,
    }
}

#[cfg(test)]
mod tests {
    use super::blank_entry;

    fn blanked(before: &str, at: &str) -> Option<(String, String)> {
        let (text, skipped) = blank_entry(before, before.find(at).expect(at))?;
        let key = skipped.key;
        // Offsets and lines are kept, so every later location is still true.
        assert_eq!(text.len(), before.len());
        assert_eq!(text.matches('\n').count(), before.matches('\n').count());
        Some((key, text))
    }

    #[test]
    fn an_inline_table_entry_goes_with_its_comma() {
        let text = "a = { x = 1, y = 2, z = 3 }\n";
        let (key, first) = blanked(text, "x").unwrap();
        assert_eq!(
            (key.as_str(), first.as_str()),
            ("x", "a = {        y = 2, z = 3 }\n")
        );
        let (key, last) = blanked(text, "z").unwrap();
        assert_eq!(
            (key.as_str(), last.as_str()),
            ("z", "a = { x = 1, y = 2        }\n")
        );
    }

    #[test]
    fn a_table_goes_whole_and_alone() {
        let text = "[t]\nk = [\n  1,\n]\n[t.sub]\nj = 2\n[u]\nv = 3\n";
        let (key, rest) = blanked(text, "t]").unwrap();
        assert_eq!(key, "t");
        assert_eq!(
            rest.split_whitespace().collect::<Vec<_>>(),
            ["[u]", "v", "=", "3"]
        );
    }

    #[test]
    fn the_innermost_entry_is_blanked() {
        let text = "[[sites]]\nname = \"a\"\n[[sites]]\nname = \"b\"\nweight = \"x\"\n";
        let (key, rest) = blanked(text, "\"x\"").unwrap();
        assert_eq!(key, "weight");
        assert_eq!(
            rest.trim_end(),
            text.replace("weight = \"x\"", "").trim_end()
        );
    }

    #[test]
    fn one_table_of_an_array_goes_alone() {
        let text = "[[sites]]\nname = \"a\"\n[[sites]]\nlat = 1\n[[sites]]\nname = \"c\"\n";
        let at = text.find("[[sites]]\nlat").unwrap();
        let (rest, skipped) = blank_entry(text, at).unwrap();
        assert_eq!((skipped.key.as_str(), skipped.table_start), ("sites", 0));
        let expected = text.replace("[[sites]]\nlat = 1", "\n");
        assert_eq!(rest.replace(' ', ""), expected.replace(' ', ""));
    }

    #[test]
    fn nothing_is_blanked_where_no_entry_is() {
        assert_eq!(blanked("# only a comment\na = 1\n", "comment"), None);
    }
}
