//! Tenant identification (SPEC section 3): which tenant does a request name?
//!
//! Every configured source is read. The first that yields an id names the tenant. A second
//! source yielding a different id makes the request ambiguous, and a malformed id in any
//! source makes it invalid: a client must never be able to steer another tenant's routing.

use thiserror::Error;

use crate::decision::BlockCode;
use crate::tenant::TenantId;

const PLACEHOLDER: &str = "{tenant}";

/// Which kind of source named the tenant; logged with every decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Host,
    Header,
    Path,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Host => "host",
            SourceKind::Header => "header",
            SourceKind::Path => "path",
        }
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("the pattern must contain `{PLACEHOLDER}` exactly once")]
    Placeholder,
    #[error("`{PLACEHOLDER}` must be a whole DNS label: write it as `{PLACEHOLDER}.example.com` or `api.{PLACEHOLDER}.example.com`")]
    HostLabel,
    #[error("a path pattern must start with `/` and end with `{PLACEHOLDER}/` or `{PLACEHOLDER}`, e.g. `/t/{PLACEHOLDER}/`")]
    PathShape,
    #[error("a header name must be a non-empty HTTP token such as `x-tenant-id`")]
    HeaderName,
}

/// `{tenant}.app.example.com`: the tenant is one DNS label of the Host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    prefix: String,
    suffix: String,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let (prefix, suffix) = split_placeholder(&pattern.to_ascii_lowercase())?;
        if !(prefix.is_empty() || prefix.ends_with('.'))
            || !(suffix.is_empty() || suffix.starts_with('.'))
        {
            return Err(PatternError::HostLabel);
        }
        Ok(HostPattern { prefix, suffix })
    }

    /// `None` when the host does not have the pattern's shape; otherwise the label, checked.
    /// `host` must already be normalized (no port, no trailing dot).
    pub fn extract(&self, host: &str) -> Option<Result<TenantId, crate::InvalidTenantId>> {
        let bytes = host.as_bytes();
        let (p, s) = (self.prefix.as_bytes(), self.suffix.as_bytes());
        if bytes.len() < p.len() + s.len()
            || !bytes[..p.len()].eq_ignore_ascii_case(p)
            || !bytes[bytes.len() - s.len()..].eq_ignore_ascii_case(s)
        {
            return None;
        }
        // A label containing dots, or an empty one, is malformed rather than "no match": the
        // client clearly addressed the tenant pattern, so fail closed with invalid_tenant.
        Some(TenantId::parse(&bytes[p.len()..bytes.len() - s.len()]))
    }
}

/// `/t/{tenant}/`: the tenant is one path segment after a fixed prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    prefix: String,
    /// Remove `prefix` + tenant segment before proxying (the rest of the path is kept).
    pub strip: bool,
}

impl PathPattern {
    pub fn parse(pattern: &str, strip: bool) -> Result<Self, PatternError> {
        let (prefix, suffix) = split_placeholder(pattern)?;
        if !prefix.starts_with('/')
            || !prefix.ends_with('/')
            || !(suffix.is_empty() || suffix == "/")
        {
            return Err(PatternError::PathShape);
        }
        Ok(PathPattern { prefix, strip })
    }

    /// `None` when the path does not start with the prefix; otherwise the segment, checked,
    /// and the number of leading path bytes that hold prefix and tenant.
    fn extract(&self, path: &str) -> Option<(Result<TenantId, crate::InvalidTenantId>, usize)> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        let segment = rest.split('/').next().unwrap_or_default();
        Some((
            TenantId::parse(segment.as_bytes()),
            self.prefix.len() + segment.len(),
        ))
    }

    /// The tenant a lenient backend reads from `lenient` (a path read by
    /// [`crate::reading::lenient_path`]): the prefix matched case-insensitively.
    fn extract_lenient(&self, lenient: &str) -> Option<Result<TenantId, crate::InvalidTenantId>> {
        let prefix = self.prefix.as_bytes();
        let path = lenient.as_bytes();
        if path.len() < prefix.len() || !path[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return None;
        }
        let rest = &lenient[prefix.len()..];
        Some(TenantId::parse(
            rest.split('/').next().unwrap_or_default().as_bytes(),
        ))
    }

    /// Whether the strict reading of `path` (what the router routes by) and a lenient
    /// backend's reading name the same tenant, or both none. A malformed strict id is left to
    /// identification, which refuses it as `invalid_tenant`.
    fn readings_agree(&self, path: &str, lenient: &str) -> bool {
        let lenient = self.extract_lenient(lenient).map(|id| id.ok());
        match self.extract(path) {
            Some((Err(_), _)) => true,
            Some((Ok(id), _)) => lenient == Some(Some(id)),
            None => lenient.is_none(),
        }
    }
}

fn split_placeholder(pattern: &str) -> Result<(String, String), PatternError> {
    let (prefix, suffix) = pattern
        .split_once(PLACEHOLDER)
        .ok_or(PatternError::Placeholder)?;
    if suffix.contains(PLACEHOLDER) {
        return Err(PatternError::Placeholder);
    }
    Ok((prefix.to_owned(), suffix.to_owned()))
}

/// True when `path` is already in RFC 3986 normal form as far as routing cares: no `.` or `..`
/// segments, no empty segments (`//`), and no percent-encoded unreserved characters.
pub fn is_normalized_path(path: &str) -> bool {
    let encoded_unreserved = path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    });
    if encoded_unreserved {
        return false;
    }
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        // An empty last segment is just a trailing slash.
        if segment == "." || segment == ".." || (segment.is_empty() && !is_last) {
            return false;
        }
    }
    true
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantSource {
    Host(HostPattern),
    /// A header name, lowercased.
    Header(String),
    Path(PathPattern),
}

impl TenantSource {
    pub fn header(name: &str) -> Result<Self, PatternError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            return Err(PatternError::HeaderName);
        }
        Ok(TenantSource::Header(name.to_ascii_lowercase()))
    }

    pub fn kind(&self) -> SourceKind {
        match self {
            TenantSource::Host(_) => SourceKind::Host,
            TenantSource::Header(_) => SourceKind::Header,
            TenantSource::Path(_) => SourceKind::Path,
        }
    }
}

/// The values a request carries for one header name.
#[derive(Clone, Copy, Debug)]
pub enum HeaderValues<'a> {
    Absent,
    One(&'a [u8]),
    /// The header appears more than once: treated as ambiguous.
    Repeated,
}

/// Result of a successful identification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identified {
    /// `None` when no source named a tenant.
    pub tenant: Option<(TenantId, SourceKind)>,
    /// Bytes to drop from the front of the path before proxying (a stripping path source).
    pub strip_path_prefix: Option<usize>,
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum IdentifyError {
    #[error("malformed tenant id in the {} source", .0.as_str())]
    Invalid(SourceKind),
    #[error("tenant sources disagree")]
    Ambiguous,
    #[error("the request names another tenant than the TLS server name")]
    Misdirected,
}

impl IdentifyError {
    pub fn code(self) -> BlockCode {
        match self {
            IdentifyError::Invalid(_) => BlockCode::InvalidTenant,
            IdentifyError::Ambiguous => BlockCode::AmbiguousTenant,
            IdentifyError::Misdirected => BlockCode::MisdirectedRequest,
        }
    }
}

/// The configured, ordered tenant sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantIdentifier {
    sources: Vec<TenantSource>,
}

impl TenantIdentifier {
    pub fn new(sources: Vec<TenantSource>) -> Self {
        TenantIdentifier { sources }
    }

    pub fn sources(&self) -> &[TenantSource] {
        &self.sources
    }

    /// Reads every source of one request.
    ///
    /// `tenant_host` is the normalized Host, or `None` when the Host is a region host (a region
    /// hint is never a tenant id); `tenant_sni` the same for the TLS server name. Host sources
    /// read the server name as a check, never as a name: a connection opened for one tenant
    /// must not carry another tenant's requests, but a request that names no tenant (a region
    /// host reached over a coalesced connection) stays tenant-less. `path` excludes the query
    /// string.
    pub fn identify<'r>(
        &self,
        tenant_host: Option<&str>,
        tenant_sni: Option<&str>,
        path: &str,
        header: impl Fn(&str) -> HeaderValues<'r>,
    ) -> Result<Identified, IdentifyError> {
        // A backend that normalises or decodes paths (`/x/../t/globex/`, `//t/globex/`,
        // `/%74/globex/`, `/t/acme/..%2Fglobex/`, `/t;x/globex/`, `/T/globex/`) could read a
        // different tenant from the path than the router did: fail closed.
        let path_patterns = || {
            self.sources.iter().filter_map(|s| match s {
                TenantSource::Path(pattern) => Some(pattern),
                _ => None,
            })
        };
        if path_patterns().next().is_some() {
            if !is_normalized_path(path) {
                return Err(IdentifyError::Ambiguous);
            }
            let lenient = crate::reading::lenient_path(path).ok_or(IdentifyError::Ambiguous)?;
            if !path_patterns().all(|pattern| pattern.readings_agree(path, &lenient)) {
                return Err(IdentifyError::Ambiguous);
            }
        }
        let mut found: Option<(TenantId, SourceKind)> = None;
        let mut strip_path_prefix = None;
        let mut ambiguous = false;
        let mut repeated_header = false;
        let mut sni_tenant = None;
        let mut note = |candidate: Option<Result<TenantId, _>>, kind| {
            match candidate {
                None => {}
                Some(Err(_)) => return Err(IdentifyError::Invalid(kind)),
                Some(Ok(id)) => match found {
                    None => found = Some((id, kind)),
                    Some((first, _)) if first != id => ambiguous = true,
                    Some(_) => {}
                },
            }
            Ok(())
        };
        for source in &self.sources {
            let kind = source.kind();
            let candidate = match source {
                TenantSource::Host(pattern) => {
                    match tenant_sni.and_then(|sni| pattern.extract(sni)) {
                        Some(Err(_)) => return Err(IdentifyError::Invalid(kind)),
                        Some(Ok(id)) => sni_tenant = sni_tenant.or(Some(id)),
                        None => {}
                    }
                    tenant_host.and_then(|h| pattern.extract(h))
                }
                TenantSource::Header(name) => match header(name) {
                    HeaderValues::Absent => None,
                    HeaderValues::One(value) => Some(TenantId::parse(value)),
                    HeaderValues::Repeated => {
                        repeated_header = true;
                        None
                    }
                },
                TenantSource::Path(pattern) => pattern.extract(path).map(|(id, consumed)| {
                    if pattern.strip {
                        strip_path_prefix = Some(consumed);
                    }
                    id
                }),
            };
            note(candidate, kind)?;
        }
        if ambiguous || repeated_header {
            return Err(IdentifyError::Ambiguous);
        }
        // A connection opened for one tenant's name carrying another tenant's request belongs
        // on another connection: 421 makes browsers retry on a new one, 400 would not.
        if matches!((sni_tenant, found), (Some(sni), Some((id, _))) if sni != id) {
            return Err(IdentifyError::Misdirected);
        }
        Ok(Identified {
            tenant: found,
            strip_path_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_identifier() -> TenantIdentifier {
        TenantIdentifier::new(vec![
            TenantSource::header("X-Tenant-Id").unwrap(),
            TenantSource::Host(HostPattern::parse("{tenant}.app.example.com").unwrap()),
            TenantSource::Path(PathPattern::parse("/t/{tenant}/", false).unwrap()),
        ])
    }

    fn no_headers(_: &str) -> HeaderValues<'static> {
        HeaderValues::Absent
    }

    fn tenant(result: Result<Identified, IdentifyError>) -> Option<(String, SourceKind)> {
        result
            .unwrap()
            .tenant
            .map(|(id, kind)| (id.to_string(), kind))
    }

    #[test]
    fn the_tls_server_name_must_agree_with_the_request_but_names_no_tenant_itself() {
        let ident = demo_identifier();
        let acme_sni = Some("acme.app.example.com");
        assert_eq!(
            tenant(ident.identify(Some("acme.app.example.com"), acme_sni, "/", no_headers)),
            Some(("acme".into(), SourceKind::Host))
        );
        // A request naming no tenant (a region host is passed as None) stays tenant-less.
        assert_eq!(
            tenant(ident.identify(None, acme_sni, "/", no_headers)),
            None
        );
        // A connection opened for acme carrying globex's request, by Host, header or path.
        let globex = |_: &str| HeaderValues::One(b"globex");
        for result in [
            ident.identify(Some("globex.app.example.com"), acme_sni, "/", no_headers),
            ident.identify(None, acme_sni, "/", globex),
            ident.identify(None, acme_sni, "/t/globex/", no_headers),
        ] {
            assert_eq!(result, Err(IdentifyError::Misdirected));
        }
        // A server name that is no tenant's leaves the other sources alone.
        assert_eq!(
            tenant(ident.identify(None, Some("www.example.com"), "/", globex)),
            Some(("globex".into(), SourceKind::Header))
        );
        assert_eq!(
            ident.identify(None, Some("ac_me.app.example.com"), "/", no_headers),
            Err(IdentifyError::Invalid(SourceKind::Host))
        );
    }

    #[test]
    fn each_source_alone_names_the_tenant() {
        let ident = demo_identifier();
        let header = |name: &str| {
            assert_eq!(name, "x-tenant-id");
            HeaderValues::One(b"Acme")
        };
        assert_eq!(
            tenant(ident.identify(None, None, "/", header)),
            Some(("acme".into(), SourceKind::Header))
        );
        assert_eq!(
            tenant(ident.identify(Some("ACME.App.Example.com"), None, "/", no_headers)),
            Some(("acme".into(), SourceKind::Host))
        );
        assert_eq!(
            tenant(ident.identify(None, None, "/t/acme/orders", no_headers)),
            Some(("acme".into(), SourceKind::Path))
        );
        assert_eq!(
            tenant(ident.identify(None, None, "/t/acme", no_headers)),
            Some(("acme".into(), SourceKind::Path))
        );
    }

    #[test]
    fn nothing_matching_names_no_tenant() {
        let ident = demo_identifier();
        for (host, path) in [
            (Some("localhost"), "/"),
            (Some("app.example.com"), "/t"),
            (None, "/tx/acme/"),
            (None, "/api/t/acme/"),
        ] {
            assert_eq!(
                tenant(ident.identify(host, None, path, no_headers)),
                None,
                "{host:?} {path}"
            );
        }
    }

    #[test]
    fn agreeing_sources_are_fine_and_the_first_one_is_reported() {
        let ident = demo_identifier();
        let header = |_: &str| HeaderValues::One(b"acme");
        assert_eq!(
            tenant(ident.identify(Some("acme.app.example.com"), None, "/t/ACME/x", header)),
            Some(("acme".into(), SourceKind::Header))
        );
    }

    #[test]
    fn disagreeing_sources_are_ambiguous() {
        let ident = demo_identifier();
        let header = |_: &str| HeaderValues::One(b"acme");
        assert_eq!(
            ident.identify(Some("globex.app.example.com"), None, "/", header),
            Err(IdentifyError::Ambiguous)
        );
        assert_eq!(
            ident.identify(None, None, "/t/globex/", header),
            Err(IdentifyError::Ambiguous)
        );
        assert_eq!(
            ident.identify(None, None, "/", |_: &str| HeaderValues::Repeated),
            Err(IdentifyError::Ambiguous)
        );
        assert_eq!(IdentifyError::Ambiguous.code(), BlockCode::AmbiguousTenant);
    }

    #[test]
    fn malformed_ids_are_invalid_in_every_source() {
        let ident = demo_identifier();
        assert_eq!(
            ident.identify(None, None, "/", |_: &str| HeaderValues::One(b"ac_me")),
            Err(IdentifyError::Invalid(SourceKind::Header))
        );
        assert_eq!(
            ident.identify(None, None, "/", |_: &str| HeaderValues::One(b"")),
            Err(IdentifyError::Invalid(SourceKind::Header))
        );
        assert_eq!(
            ident.identify(Some("a.b.app.example.com"), None, "/", no_headers),
            Err(IdentifyError::Invalid(SourceKind::Host))
        );
        assert_eq!(
            ident.identify(None, None, "/t/ac_me/x", no_headers),
            Err(IdentifyError::Invalid(SourceKind::Path))
        );
        let long = format!("/t/{}/", "a".repeat(65));
        assert_eq!(
            ident.identify(None, None, &long, no_headers),
            Err(IdentifyError::Invalid(SourceKind::Path))
        );
        // Invalid wins over a valid id elsewhere: fail closed.
        assert_eq!(
            ident.identify(None, None, "/t/a%20b/", |_: &str| HeaderValues::One(
                b"acme"
            )),
            Err(IdentifyError::Invalid(SourceKind::Path))
        );
        assert_eq!(
            IdentifyError::Invalid(SourceKind::Path).code(),
            BlockCode::InvalidTenant
        );
    }

    #[test]
    fn non_normalized_paths_are_ambiguous_when_a_path_source_exists() {
        let ident = demo_identifier();
        let header = |_: &str| HeaderValues::One(b"acme");
        for path in [
            "/x/../t/globex/",
            "//t/globex/",
            "/%74/globex/",
            "/t/acme/../globex/",
            "/t/./acme/",
            "/t/acme/..",
        ] {
            assert_eq!(
                ident.identify(None, None, path, header),
                Err(IdentifyError::Ambiguous),
                "{path}"
            );
        }
        for path in ["/", "/t/acme/", "/t/acme", "/a/b.c/..d/", "/x%2Fy", "/%20"] {
            assert!(ident.identify(None, None, path, header).is_ok(), "{path}");
        }
        // Without a path source the path cannot name a tenant, so it is not checked.
        let header_only = TenantIdentifier::new(vec![TenantSource::header("x-tenant-id").unwrap()]);
        assert!(header_only.identify(None, None, "//x/../y", header).is_ok());
    }

    /// Paths a backend could read as another tenant than the router (issue 14), each with the
    /// framework behaviour it guards against; the header names acme throughout.
    #[test]
    fn paths_a_lenient_backend_reads_differently_are_refused() {
        let ident = demo_identifier();
        let acme = |_: &str| HeaderValues::One(b"acme");
        for path in [
            "/t/acme/..;/globex/orders",    // Tomcat, Jetty, Spring: `..;` is `..`
            "/t/acme/..%2Fglobex/orders",   // nginx $uri, Go path.Clean of the decoded path
            "/t/acme/..%2fglobex/orders",   // any case of the escape
            "/t/acme/..\\globex/o",         // servers that treat `\` as `/`
            "/t/acme/..%5Cglobex/o",        // ... and its escape
            "/t%2Fglobex/orders",           // a prefix that matches only after decoding
            "/T/globex/orders",             // ... or only case-insensitively
            "/t;x/globex/orders",           // `;params` before the tenant segment
            "/t%3Bx/globex/orders",         // ... encoded
            "/t/acme/..%252Fglobex",        // double encoding
            "/t/acme/%2e%2e/globex/",       // dot segments after decoding
            "/%2e%2e/t/globex/",            // ... before the prefix
            "/t/%61cme/",                   // an escaped unreserved byte (strict check)
            "/t/acme/x%00",                 // NUL: C backends cut the path there
            "/t/acme/%C0%AF..%C0%AFglobex", // overlong UTF-8 `/`
            "/t/acme/%2e%2e",               // a lenient reader sees no tenant at all
        ] {
            assert_eq!(
                ident.identify(None, None, path, acme),
                Err(IdentifyError::Ambiguous),
                "{path}"
            );
        }
        // Readings that agree are served as usual.
        for path in [
            "/t/acme/orders",
            "/t/acme/a%2Fb",
            "/t/acme/100%25",
            "/t/acme/x;v=1",
            "/hello%20world",
        ] {
            assert!(ident.identify(None, None, path, acme).is_ok(), "{path}");
        }
        // A malformed strict id stays invalid_tenant, whatever a lenient reader sees.
        assert_eq!(
            ident.identify(None, None, "/t/acme;jsessionid=1/x", acme),
            Err(IdentifyError::Invalid(SourceKind::Path))
        );
    }

    #[test]
    fn stripping_path_source_reports_how_much_to_strip() {
        let ident = TenantIdentifier::new(vec![TenantSource::Path(
            PathPattern::parse("/t/{tenant}/", true).unwrap(),
        )]);
        let found = ident
            .identify(None, None, "/t/acme/orders/1", no_headers)
            .unwrap();
        assert_eq!(found.strip_path_prefix, Some("/t/acme".len()));
        let kept = demo_identifier()
            .identify(None, None, "/t/acme/orders/1", no_headers)
            .unwrap();
        assert_eq!(kept.strip_path_prefix, None);
    }

    #[test]
    fn patterns_are_checked() {
        assert_eq!(
            HostPattern::parse("app.example.com"),
            Err(PatternError::Placeholder)
        );
        assert_eq!(
            HostPattern::parse("{tenant}.{tenant}.example.com"),
            Err(PatternError::Placeholder)
        );
        assert_eq!(
            HostPattern::parse("api-{tenant}.example.com"),
            Err(PatternError::HostLabel)
        );
        assert!(HostPattern::parse("api.{tenant}.example.com").is_ok());
        assert_eq!(
            PathPattern::parse("t/{tenant}/", false),
            Err(PatternError::PathShape)
        );
        assert_eq!(
            PathPattern::parse("/t{tenant}/", false),
            Err(PatternError::PathShape)
        );
        assert_eq!(
            PathPattern::parse("/t/{tenant}x", false),
            Err(PatternError::PathShape)
        );
        assert!(PathPattern::parse("/t/{tenant}", false).is_ok());
        assert_eq!(
            TenantSource::header("x tenant"),
            Err(PatternError::HeaderName)
        );
        assert_eq!(TenantSource::header(""), Err(PatternError::HeaderName));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Whenever a lenient backend's reading of the path names a tenant, the router names
        /// that very tenant or refuses the request (issue 14).
        #[test]
        fn a_lenient_reading_never_names_another_tenant(
            segments in proptest::collection::vec(
                proptest::sample::select(vec![
                    "t", "T", "acme", "globex", "..", ".", "", "%2e%2e", "%2E.", "..;", ";x",
                    "t;x", "%2F", "%2f", "%5C", "\\", "%3B", "%25", "%252F", "%74", "x",
                    "acme%2F..", "..%2F", "%00", "%C0%AF", "a%20b", "orders",
                ]),
                0..7,
            ),
            header in proptest::option::of(proptest::sample::select(vec!["acme", "globex"])),
        ) {
            let path = format!("/{}", segments.join("/"));
            let ident = demo_identifier();
            let lenient = crate::reading::lenient_path(&path);
            let sent = header.map(|h| h.as_bytes());
            let result = ident.identify(None, None, &path, |_: &str| match sent {
                Some(v) => HeaderValues::One(v),
                None => HeaderValues::Absent,
            });
            let pattern = PathPattern::parse("/t/{tenant}/", false).unwrap();
            if let Some(Some(Ok(backend_reads))) =
                lenient.as_deref().map(|l| pattern.extract_lenient(l))
            {
                if let Ok(found) = result {
                    proptest::prop_assert_eq!(
                        found.tenant.map(|(id, _)| id),
                        Some(backend_reads),
                        "{}",
                        path
                    );
                }
            }
        }
    }

    #[test]
    fn host_pattern_with_inner_placeholder() {
        let pattern = HostPattern::parse("api.{tenant}.example.com").unwrap();
        assert_eq!(
            pattern
                .extract("api.acme.example.com")
                .unwrap()
                .unwrap()
                .as_str(),
            "acme"
        );
        assert!(pattern.extract("web.acme.example.com").is_none());
    }
}
