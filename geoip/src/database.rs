use std::net::IpAddr;
use std::path::Path;

use maxminddb::{PathElement, Reader};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GeoIpError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid MaxMind database: {0}")]
    Invalid(#[from] maxminddb::MaxMindDbError),
    #[error("database type `{0}` is neither a City nor a Country database")]
    UnsupportedType(String),
    #[error("the new database is a {to:?} database, the running one a {from:?} database; restart to change the kind")]
    KindChanged { from: Kind, to: Kind },
}

/// What the database can tell about an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Coordinates (`location.latitude` / `location.longitude`): nearest site by distance.
    City,
    /// ISO country codes (`country.iso_code`): a configured country -> site table.
    Country,
}

/// Where an address is, as far as the database knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Location<'a> {
    Coordinates {
        lat: f64,
        lon: f64,
    },
    /// ISO 3166-1 alpha-2, as stored in the database (e.g. `DE`).
    Country(&'a str),
}

pub struct Database {
    reader: Reader<Vec<u8>>,
    kind: Kind,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("kind", &self.kind)
            .field("database_type", &self.reader.metadata().database_type)
            .field("build_epoch", &self.build_epoch())
            .finish()
    }
}

impl Database {
    /// Reads and fully verifies a database file.
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let bytes = std::fs::read(path).map_err(|source| GeoIpError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(bytes)
    }

    /// Parses and verifies the whole file (tree and data), so a truncated or corrupt file is
    /// refused here rather than failing lookups later.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoIpError> {
        let reader = Reader::from_source(bytes)?;
        reader.verify()?;
        let database_type = &reader.metadata().database_type;
        let kind = if database_type.contains("City") {
            Kind::City
        } else if database_type.contains("Country") {
            Kind::Country
        } else {
            return Err(GeoIpError::UnsupportedType(database_type.clone()));
        };
        Ok(Database { reader, kind })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// When the database was built (seconds since the Unix epoch).
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// `None` when the address is not in the database (private ranges, unknown space) or the
    /// record lacks the field this kind of database needs.
    pub fn lookup(&self, ip: IpAddr) -> Option<Location<'_>> {
        let ip = ip.to_canonical();
        // An IPv4-only database cannot hold IPv6 addresses; asking builds an error string.
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return None;
        }
        let result = self.reader.lookup(ip).ok()?;
        if !result.has_data() {
            return None;
        }
        match self.kind {
            Kind::City => {
                let coordinate = |field| {
                    result
                        .decode_path::<f64>(&[
                            PathElement::Key("location"),
                            PathElement::Key(field),
                        ])
                        .ok()
                        .flatten()
                };
                Some(Location::Coordinates {
                    lat: coordinate("latitude")?,
                    lon: coordinate("longitude")?,
                })
            }
            Kind::Country => result
                .decode_path::<&str>(&[PathElement::Key("country"), PathElement::Key("iso_code")])
                .ok()
                .flatten()
                .map(Location::Country),
        }
    }
}
