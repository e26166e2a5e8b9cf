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
    let mut skipped_keys = Vec::new();
    loop {
        let e = match toml::from_str::<T>(&remaining) {
            Ok(file) if errors.is_empty() => return Ok(file),
            Ok(_) => return Err(errors),
            Err(e) => e,
        };
        // A required entry skipped over for its bad value now reads as missing: not news.
        let missing = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        if missing.is_some_and(|field| skipped_keys.iter().any(|k| k == field)) {
            return Err(errors);
        }
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        errors.push(ConfigError::Parse {
            file: path.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        });
        let skipped = e
            .span()
            .and_then(|span| blank_entry(&mut remaining, span.start));
        match skipped {
            Some(key) if errors.len() < MAX_PROBLEMS => skipped_keys.push(key),
            _ => return Err(errors),
        }
    }
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

/// Blanks out the entry (key and value, or a whole table) that holds byte `at`, and returns its
/// key. `None` when no entry holds it, or when the text would no longer be TOML without it.
fn blank_entry(text: &mut String, at: usize) -> Option<String> {
    let document = ImDocument::parse(text.as_str()).ok()?;
    let mut spans = Vec::new();
    let key = entry_at(document.as_table(), at, &mut spans)?;
    drop(document);
    let mut bytes = std::mem::take(text).into_bytes();
    for span in spans {
        let span = with_separating_comma(&bytes, span);
        for byte in &mut bytes[span] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Spans lie on character boundaries, so blanking whole spans keeps the text UTF-8.
    *text = String::from_utf8(bytes).ok()?;
    ImDocument::parse(text.as_str()).ok()?;
    Some(key)
}

/// The innermost entry of `table` holding byte `at`: its key, with every span it occupies
/// pushed to `spans`.
fn entry_at(table: &dyn TableLike, at: usize, spans: &mut Vec<Range<usize>>) -> Option<String> {
    for (name, item) in table.iter() {
        let Some((key, _)) = table.get_key_value(name) else {
            continue;
        };
        if let Some(inner) = tables_in(item).find_map(|t| entry_at(t, at, spans)) {
            return Some(inner);
        }
        let mut own = Vec::new();
        entry_spans(key, item, &mut own);
        if own.iter().any(|span| span.contains(&at)) {
            spans.extend(own);
            return Some(name.to_owned());
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
            let headers = match item {
                Item::ArrayOfTables(tables) => tables.iter().filter_map(|t| t.span()).collect(),
                _ => item.span().into_iter().collect::<Vec<_>>(),
            };
            spans.extend(headers);
            for table in tables_in(item) {
                for (name, child) in table.iter() {
                    if let Some((child_key, _)) = table.get_key_value(name) {
                        entry_spans(child_key, child, spans);
                    }
                }
            }
        }
    }
}

/// The tables directly inside `item`: itself, the tables of an array of tables, and inline
/// tables (also inside an array, as in `sources = [ { host = ... } ]`).
fn tables_in(item: &Item) -> Box<dyn Iterator<Item = &dyn TableLike> + '_> {
    match item {
        Item::Table(table) => Box::new(std::iter::once(table as &dyn TableLike)),
        Item::ArrayOfTables(tables) => Box::new(tables.iter().map(|t| t as &dyn TableLike)),
        Item::Value(Value::InlineTable(table)) => {
            Box::new(std::iter::once(table as &dyn TableLike))
        }
        Item::Value(Value::Array(values)) => Box::new(
            values
                .iter()
                .filter_map(Value::as_inline_table)
                .map(|t| t as &dyn TableLike),
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

    fn blanked(text: &str, at: &str) -> Option<(String, String)> {
        let mut text = text.to_owned();
        let before = text.clone();
        let key = blank_entry(&mut text, before.find(at).expect(at))?;
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
    fn nothing_is_blanked_where_no_entry_is() {
        assert_eq!(blanked("# only a comment\na = 1\n", "comment"), None);
    }
}
