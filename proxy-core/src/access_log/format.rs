//! `log-format-upstream`: nginx's `log_format` text compiled once into typed segments.

use http::HeaderName;

/// How variable values are escaped (nginx's `log_format ... escape=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Escape {
    /// nginx's default: `"`, `\`, control bytes and bytes above 0x7E become `\xHH`; a value
    /// that is not set is written `-`.
    #[default]
    Default,
    /// `escape=json` (`log-format-escape-json`): JSON string escapes; a value that is not set
    /// is written as nothing.
    Json,
    /// `escape=none` (`log-format-escape-none`): values are written as they are.
    None,
}

/// A `log-format-upstream` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `$` followed by no variable name (or an unclosed `${`).
    #[error("invalid variable name at byte {0}")]
    InvalidName(usize),
    /// A variable Weir does not know (nginx refuses to load such a format).
    #[error("unknown variable \"${0}\"")]
    UnknownVariable(String),
}

/// One variable of a log format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Var {
    RemoteAddr,
    RemotePort,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Scheme,
    Host,
    ServerPort,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestLength,
    RequestTime,
    ProxyUpstreamName,
    ProxyAlternativeUpstreamName,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseLength,
    UpstreamResponseTime,
    UpstreamConnectTime,
    UpstreamHeaderTime,
    ReqId,
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    LocationPath,
    SslProtocol,
    SslCipher,
    ProxyProtocolAddr,
    ProxyAddXForwardedFor,
    Pid,
    /// `$http_<name>`: a request header.
    Header(HeaderName),
    /// `$sent_http_<name>`: a response header.
    SentHeader(HeaderName),
    /// `$arg_<name>`: a query parameter.
    Arg(Box<str>),
    /// `$cookie_<name>`: a cookie of the request.
    Cookie(Box<str>),
}

impl Var {
    fn named(name: &str) -> Option<Var> {
        use Var::*;
        let header = |rest: &str| HeaderName::from_bytes(rest.replace('_', "-").as_bytes()).ok();
        if let Some(rest) = name.strip_prefix("http_") {
            return header(rest).map(Header);
        }
        if let Some(rest) = name.strip_prefix("sent_http_") {
            return header(rest).map(SentHeader);
        }
        if let Some(rest) = name.strip_prefix("arg_") {
            return (!rest.is_empty()).then(|| Arg(rest.into()));
        }
        if let Some(rest) = name.strip_prefix("cookie_") {
            return (!rest.is_empty()).then(|| Cookie(rest.into()));
        }
        Some(match name {
            "remote_addr" => RemoteAddr,
            "remote_port" => RemotePort,
            "remote_user" => RemoteUser,
            "time_local" => TimeLocal,
            "time_iso8601" => TimeIso8601,
            "msec" => Msec,
            "request" => Request,
            "request_method" => RequestMethod,
            "request_uri" => RequestUri,
            "uri" | "document_uri" => Uri,
            "args" | "query_string" => Args,
            "server_protocol" => ServerProtocol,
            "scheme" => Scheme,
            "host" => Host,
            "server_port" => ServerPort,
            "status" => Status,
            "body_bytes_sent" => BodyBytesSent,
            "bytes_sent" => BytesSent,
            "request_length" => RequestLength,
            "request_time" => RequestTime,
            "proxy_upstream_name" => ProxyUpstreamName,
            "proxy_alternative_upstream_name" => ProxyAlternativeUpstreamName,
            "upstream_addr" => UpstreamAddr,
            "upstream_status" => UpstreamStatus,
            "upstream_response_length" => UpstreamResponseLength,
            "upstream_response_time" => UpstreamResponseTime,
            "upstream_connect_time" => UpstreamConnectTime,
            "upstream_header_time" => UpstreamHeaderTime,
            "req_id" | "request_id" => ReqId,
            "namespace" => Namespace,
            "ingress_name" => IngressName,
            "service_name" => ServiceName,
            "service_port" => ServicePort,
            "location_path" => LocationPath,
            "ssl_protocol" => SslProtocol,
            "ssl_cipher" => SslCipher,
            "proxy_protocol_addr" => ProxyProtocolAddr,
            "proxy_add_x_forwarded_for" => ProxyAddXForwardedFor,
            "pid" => Pid,
            _ => return None,
        })
    }

    /// Values that never contain a byte any escaping changes (numbers, times, addresses).
    pub(crate) fn is_plain(&self) -> bool {
        use Var::*;
        matches!(
            self,
            RemoteAddr
                | RemotePort
                | TimeLocal
                | TimeIso8601
                | Msec
                | Status
                | BodyBytesSent
                | BytesSent
                | RequestLength
                | RequestTime
                | UpstreamAddr
                | UpstreamStatus
                | UpstreamResponseLength
                | UpstreamResponseTime
                | UpstreamConnectTime
                | UpstreamHeaderTime
                | ServerPort
                | ServerProtocol
                | Scheme
                | Pid
                | ProxyProtocolAddr
        )
    }
}

/// A piece of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Text(Box<[u8]>),
    Var(Var),
}

/// A compiled access log format: literal text and typed variables, built once per
/// configuration; requests only render it.
#[derive(Debug, Clone)]
pub struct LogFormat {
    source: Box<str>,
    escape: Escape,
    pub(crate) segments: Box<[Segment]>,
    pub(crate) needs_connect_time: bool,
    size_hint: usize,
}

impl PartialEq for LogFormat {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.escape == other.escape
    }
}

impl Eq for LogFormat {}

impl std::hash::Hash for LogFormat {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.source, self.escape).hash(state);
    }
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat::compile(LogFormat::UPSTREAMINFO, Escape::Default)
            .expect("the default format compiles")
    }
}

impl LogFormat {
    /// ingress-nginx's default `log-format-upstream` (its `upstreaminfo` format).
    pub const UPSTREAMINFO: &'static str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id";

    /// Compile an nginx `log_format` text: `$name` and `${name}` are variables, the rest is
    /// written as it is. An unknown variable is an error, as nginx refuses such a format.
    pub fn compile(source: &str, escape: Escape) -> Result<LogFormat, FormatError> {
        let bytes = source.as_bytes();
        let mut segments = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                text.push(bytes[i]);
                i += 1;
                continue;
            }
            let start = i;
            let braced = bytes.get(i + 1) == Some(&b'{');
            let name_start = if braced { i + 2 } else { i + 1 };
            let mut end = name_start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end == name_start {
                return Err(FormatError::InvalidName(start));
            }
            let name = &source[name_start..end];
            i = end;
            if braced {
                if bytes.get(end) != Some(&b'}') {
                    return Err(FormatError::InvalidName(start));
                }
                i += 1;
            }
            let var = Var::named(&name.to_ascii_lowercase())
                .ok_or_else(|| FormatError::UnknownVariable(name.to_string()))?;
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text).into()));
            }
            segments.push(Segment::Var(var));
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text.into()));
        }
        let needs_connect_time = segments
            .iter()
            .any(|s| *s == Segment::Var(Var::UpstreamConnectTime));
        let size_hint = segments
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.len(),
                Segment::Var(_) => 16,
            })
            .sum::<usize>()
            + 1;
        Ok(LogFormat {
            source: source.into(),
            escape,
            segments: segments.into(),
            needs_connect_time,
            size_hint: size_hint.next_power_of_two(),
        })
    }

    /// The format text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How values are escaped.
    pub fn escape(&self) -> Escape {
        self.escape
    }

    /// Whether the format uses `$upstream_connect_time` (measured only then).
    pub fn needs_connect_time(&self) -> bool {
        self.needs_connect_time
    }

    /// A starting capacity for a rendered line.
    pub(crate) fn size_hint(&self) -> usize {
        self.size_hint
    }
}

/// Escape `value` onto `out` as nginx does for `escape`.
pub(crate) fn escape_into(escape: Escape, value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    match escape {
        Escape::None => out.extend_from_slice(value),
        Escape::Default => {
            for &b in value {
                if b < 0x20 || b == b'"' || b == b'\\' || b > 0x7e {
                    out.extend_from_slice(&[
                        b'\\',
                        b'x',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 0xf) as usize],
                    ]);
                } else {
                    out.push(b);
                }
            }
        }
        Escape::Json => {
            for &b in value {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    b if b < 0x20 => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        b'0' + (b >> 4),
                        HEX_LOWER[(b & 0xf) as usize],
                    ]),
                    b => out.push(b),
                }
            }
        }
    }
}

/// Whether `value` is written unchanged by `escape`.
pub(crate) fn needs_escape(escape: Escape, value: &[u8]) -> bool {
    match escape {
        Escape::None => false,
        Escape::Default => value
            .iter()
            .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b > 0x7e),
        Escape::Json => value.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(f: &LogFormat) -> Vec<Var> {
        f.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Var(v) => Some(v.clone()),
                Segment::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_default_format_compiles_to_its_variables() {
        let f = LogFormat::default();
        let v = vars(&f);
        assert_eq!(v.len(), 17);
        assert_eq!(v[0], Var::RemoteAddr);
        assert_eq!(v[6], Var::Header(HeaderName::from_static("referer")));
        assert_eq!(v[7], Var::Header(HeaderName::from_static("user-agent")));
        assert_eq!(v[16], Var::ReqId);
        assert!(!f.needs_connect_time());
        assert_eq!(
            f.segments[1],
            Segment::Text(b" - ".to_vec().into_boxed_slice())
        );
    }

    #[test]
    fn braces_headers_args_and_cookies() {
        let f = LogFormat::compile(
            "${host}x $http_X_Foo $sent_http_content_type $arg_q $cookie_s $upstream_connect_time",
            Escape::Json,
        )
        .unwrap();
        assert_eq!(
            vars(&f),
            [
                Var::Host,
                Var::Header(HeaderName::from_static("x-foo")),
                Var::SentHeader(HeaderName::from_static("content-type")),
                Var::Arg("q".into()),
                Var::Cookie("s".into()),
                Var::UpstreamConnectTime,
            ]
        );
        assert_eq!(f.segments[1], Segment::Text(b"x ".to_vec().into()));
        assert!(f.needs_connect_time());
        assert_eq!(f.escape(), Escape::Json);
    }

    #[test]
    fn malformed_formats_are_errors() {
        let e = |s| LogFormat::compile(s, Escape::Default).unwrap_err();
        assert_eq!(e("a $ b"), FormatError::InvalidName(2));
        assert_eq!(e("$"), FormatError::InvalidName(0));
        assert_eq!(e("${host"), FormatError::InvalidName(0));
        assert_eq!(e("${}"), FormatError::InvalidName(0));
        assert_eq!(
            e("$remote_addr $no_such_var"),
            FormatError::UnknownVariable("no_such_var".into())
        );
        assert!(e("$http_").to_string().contains("http_"));
        assert!(LogFormat::compile("", Escape::Default)
            .unwrap()
            .segments
            .is_empty());
    }

    #[test]
    fn formats_compare_by_text_and_escape() {
        let a = LogFormat::compile("$status", Escape::Default).unwrap();
        assert_eq!(a, LogFormat::compile("$status", Escape::Default).unwrap());
        assert_ne!(a, LogFormat::compile("$status", Escape::Json).unwrap());
    }

    #[test]
    fn escaping_as_nginx() {
        let esc = |e, v: &[u8]| {
            let mut out = Vec::new();
            escape_into(e, v, &mut out);
            assert_eq!(needs_escape(e, v), out != v, "{v:?}");
            String::from_utf8(out).unwrap()
        };
        let v = "a\"b\\c\nd\u{e9}\x7f".as_bytes();
        assert_eq!(
            esc(Escape::Default, v),
            "a\\x22b\\x5Cc\\x0Ad\\xC3\\xA9\\x7F"
        );
        assert_eq!(esc(Escape::Json, v), "a\\\"b\\\\c\\nd\u{e9}\x7f");
        assert_eq!(
            esc(Escape::Json, b"\x01\t\r\x08\x0c\x1b"),
            "\\u0001\\t\\r\\b\\f\\u001b"
        );
        assert_eq!(esc(Escape::None, v).as_bytes(), v);
        assert_eq!(esc(Escape::Default, b"plain text/1.0"), "plain text/1.0");
    }
}
