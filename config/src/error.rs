use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// One problem in a config or registry file. Every message names the file and the place in it,
/// and `Invalid` says how to fix it. [`ConfigError::code`] names the kind of mistake for tools
/// (the crate docs list the codes); the message is for people.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: cannot read the file: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {at}: {problem}; fix: {fix}", file.display())]
    Invalid {
        file: PathBuf,
        /// The kind of mistake, one of [`ConfigError::CODES`].
        code: &'static str,
        /// Where in the file, as a path into the document: `regions[1].sites[0].backends[2]`.
        at: String,
        problem: String,
        fix: String,
    },
}

/// Declares each code once: the constant its checks use (a misspelt code does not compile) and
/// its row in [`ConfigError::CODES`] (so no code goes unlisted). One code per kind of mistake,
/// not per check: a tool acts on the code while the wording of messages is free to improve.
macro_rules! codes {
    ($($name:ident = $code:literal: $meaning:literal;)*) => {
        pub(crate) mod code {
            $(pub(crate) const $name: &str = $code;)*
        }
        const CODES: &[(&str, &str)] = &[$(($code, $meaning)),*];
    };
}

codes! {
    UNREADABLE_FILE = "unreadable_file":
        "a file cannot be read (missing, a directory, no permission): the config, the registry, \
        or a certificate, key or GeoIP database the config names";
    SYNTAX = "syntax":
        "the text is not well-formed TOML or JSON, or writes one key twice";
    UNKNOWN_FIELD = "unknown_field":
        "a field the format does not have, often a misspelt one";
    MISSING_FIELD = "missing_field":
        "a field the format requires is not there";
    WRONG_TYPE = "wrong_type":
        "a value of the wrong type (a number for a string), or a word not allowed there";
    INVALID_FILE = "invalid_file":
        "a file reads but does not hold what the setting needs: no certificate, a key that is not \
        the certificate's, not a City or Country database";
    MISSING_SETTING = "missing_setting":
        "something required is not configured, or a setting is given without one it needs";
    CONFLICTING_SETTINGS = "conflicting_settings":
        "settings that cannot hold together, or one that has no effect with the others";
    INVALID_ADDRESS = "invalid_address":
        "not a resolvable `host:port`, or not an IP address or CIDR";
    INVALID_NAME = "invalid_name":
        "a region, site, certificate or token name, or a host name, not in the accepted form";
    INVALID_VALUE = "invalid_value":
        "another value not in the accepted form: a pattern, policy, role, TLS version, HTTP \
        method, path, status range, country code or digest";
    OUT_OF_RANGE = "out_of_range":
        "a number or a count outside what is accepted: zero, or past a limit";
    DUPLICATE_NAME = "duplicate_name":
        "a name used twice where it must be unique: a region, site, host, certificate, DNS name, \
        token or tenant";
    DUPLICATE_ENTRY = "duplicate_entry":
        "the same entry listed twice: a backend, a tenant source, a token's secret";
    UNKNOWN_REGION = "unknown_region":
        "a region that is not defined in the config";
    UNKNOWN_SITE = "unknown_site":
        "a site that is not defined in the config";
    // A tenant's own settings, the same codes as the admin API's (`TenantError::code`).
    INVALID_TENANT = "invalid_tenant":
        "a tenant id that is not valid, or not lowercase";
    INVALID_REPLICATION = "invalid_replication":
        "a tenant's replication lists no region, or one region twice";
    REPLICATION_TO_HOME_REGION = "replication_to_home_region":
        "a tenant replicates to its own home region";
    INVALID_EXPIRY = "invalid_expiry":
        "a replication expiry that is not an RFC 3339 time";
}

impl ConfigError {
    /// Every code [`ConfigError::code`] returns, with what it means. The crate docs' table is
    /// checked against this list, and the validation tests produce every code in it.
    pub const CODES: &'static [(&'static str, &'static str)] = CODES;

    /// A stable machine-readable name for the kind of mistake, one of [`ConfigError::CODES`].
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => code::UNREADABLE_FILE,
            ConfigError::Parse { message, .. } => parse_code(message),
            ConfigError::Invalid { code, .. } => code,
        }
    }

    /// The place in the document (`regions[1].sites[0].lat`), for problems found after the
    /// file was read; a read or parse error has a line and column instead.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { at, .. } => Some(at),
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

/// The kind of a parse error, told from its message. serde words the schema errors it raises
/// itself (for TOML and JSON alike) in a fixed way; everything else comes from the TOML or JSON
/// reader and means the text is not well-formed.
fn parse_code(message: &str) -> &'static str {
    const WRONG_TYPE: [&str; 5] = [
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "data did not match any variant",
    ];
    if message.starts_with("unknown field") {
        code::UNKNOWN_FIELD
    } else if message.starts_with("missing field") {
        code::MISSING_FIELD
    } else if WRONG_TYPE.iter().any(|p| message.starts_with(p)) {
        code::WRONG_TYPE
    } else {
        code::SYNTAX
    }
}

/// All problems found in one load, in file order. Never empty.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} found:", if n == 1 { "" } else { "s" })?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Converts a byte offset into a 1-based line and column.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    /// The table in the crate docs, as (code, meaning) rows.
    fn documented_codes() -> Vec<(String, String)> {
        include_str!("lib.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! | `"))
            .map(|row| {
                let (code, rest) = row.split_once("` | ").expect("| `code` | meaning |");
                let meaning = rest.strip_suffix(" |").expect("a row ends with ` |`");
                (code.to_owned(), meaning.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_documented_table_is_the_code_list() {
        let listed: Vec<(String, String)> = ConfigError::CODES
            .iter()
            .map(|(code, meaning)| (code.to_string(), meaning.to_string()))
            .collect();
        assert_eq!(documented_codes(), listed);
    }

    #[test]
    fn codes_are_distinct_snake_case_words() {
        let mut seen = std::collections::HashSet::new();
        for (code, meaning) in ConfigError::CODES {
            assert!(seen.insert(code), "{code} is listed twice");
            assert!(
                !code.is_empty()
                    && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !code.starts_with('_')
                    && !code.ends_with('_'),
                "{code} is not snake_case"
            );
            assert!(!meaning.is_empty() && !meaning.contains('|'), "{code}");
        }
    }

    /// Real messages from the TOML and JSON readers, each told apart by its code.
    #[test]
    fn parse_errors_are_told_apart_by_their_message() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            name: String,
            mode: Option<Mode>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Mode {
            Active,
        }
        let toml = |text: &str| super::parse_code(toml::from_str::<T>(text).unwrap_err().message());
        let json = |text: &str| {
            let message = serde_json::from_str::<T>(text).unwrap_err().to_string();
            super::parse_code(&message)
        };
        assert_eq!(toml("name = \"a\"\nnmae = \"b\""), "unknown_field");
        assert_eq!(toml("mode = \"active\""), "missing_field");
        assert_eq!(toml("name = 5"), "wrong_type");
        assert_eq!(toml("name = \"a\"\nmode = \"mirror\""), "wrong_type");
        assert_eq!(toml("name = "), "syntax");
        assert_eq!(toml("name = \"a\"\nname = \"b\""), "syntax");
        assert_eq!(json(r#"{"name": "a", "nmae": "b"}"#), "unknown_field");
        assert_eq!(json(r#"{}"#), "missing_field");
        assert_eq!(json(r#"{"name": 5}"#), "wrong_type");
        assert_eq!(json(r#"{"name": "a", "mode": "mirror"}"#), "wrong_type");
        assert_eq!(json(r#"{"name": "#), "syntax");
        assert_eq!(json(r#"{"name": "a", "name": "b"}"#), "syntax");
    }

    #[test]
    fn line_column_is_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(super::line_column(text, 0), (1, 1));
        assert_eq!(super::line_column(text, 6), (2, 1));
        assert_eq!(super::line_column(text, 8), (2, 3));
    }
}
