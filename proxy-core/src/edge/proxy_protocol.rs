//! PROXY protocol v1 and v2 ([HAProxy spec](https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt))
//! on an accepted connection, as ingress-nginx's `use-proxy-protocol: "true"` expects from the
//! load balancer in front of it.
//!
//! [`read_proxy_header`] consumes exactly the header and nothing more: the bytes that follow belong to
//! TLS or HTTP and stay unread in the stream. That is why it reads the v1 line one byte at a time
//! (at most [`PROXY_V1_MAX_LEN`] reads) and the v2 block in two exact reads (the 16-byte fixed part, then
//! the number of bytes its length field announces); parsing is done by the [`ppp`] crate.
//!
//! A header without usable addresses — v1 `UNKNOWN`, v2 `LOCAL` (health checks of the load
//! balancer itself), or a v2 `PROXY` for anything but TCP over IPv4/IPv6 — is accepted with
//! `None` addresses: the spec says to use the connection's real endpoints then.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 header line the spec allows, `\r\n` included.
pub const PROXY_V1_MAX_LEN: usize = 107;

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The size of the v2 fixed part: signature, version/command, family/protocol, length.
const V2_FIXED_LEN: usize = 16;
/// How every v1 line starts.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The addresses a PROXY protocol header carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client (`None`: use the connection's peer address).
    pub source: Option<SocketAddr>,
    /// The address the client connected to (`None`: use the connection's local address).
    pub destination: Option<SocketAddr>,
    /// The protocol version the header used: 1 (text) or 2 (binary).
    pub version: u8,
}

/// Why a connection's PROXY protocol header was rejected; the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    /// The whole header did not arrive within the timeout.
    #[error("timed out reading the PROXY protocol header")]
    Timeout,
    /// Reading failed, including the peer closing the connection mid-header
    /// ([`std::io::ErrorKind::UnexpectedEof`]).
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    /// It starts like a PROXY protocol header but is not a valid one.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// The connection does not start with a PROXY protocol header (for instance a client talking
    /// HTTP or TLS directly to a listener that expects one).
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxyProtocol,
}

impl ProxyProtocolError {
    /// A short, fixed label for metrics: `timeout`, `eof` (the peer closed the connection before
    /// the header was complete, typical of TCP health checks), `io`, `malformed` or
    /// `not_proxy_protocol`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ProxyProtocolError::Timeout => "timeout",
            ProxyProtocolError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "eof",
            ProxyProtocolError::Io(_) => "io",
            ProxyProtocolError::Malformed(_) => "malformed",
            ProxyProtocolError::NotProxyProtocol => "not_proxy_protocol",
        }
    }
}

/// Read a PROXY protocol v1 or v2 header from the start of `stream`, consuming exactly its bytes.
///
/// The first byte selects the version: `P` → v1, `\r` (0x0D) → v2, anything else is
/// [`ProxyProtocolError::NotProxyProtocol`]. The whole read, however the bytes trickle in, is
/// bounded by `timeout`. On error the stream is in an unspecified position and should be closed.
///
/// v1 is read one byte per `read` call (at most [`PROXY_V1_MAX_LEN`]), so wrap a raw socket as is:
/// a buffered reader would consume bytes past the header.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyProtocolError> {
    match tokio::time::timeout(timeout, read_unbounded(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyProtocolError::Timeout),
    }
}

async fn read_unbounded<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<ProxyHeader, ProxyProtocolError> {
    match stream.read_u8().await? {
        b'P' => read_v1(stream).await,
        0x0D => read_v2(stream).await,
        _ => Err(ProxyProtocolError::NotProxyProtocol),
    }
}

/// The rest of a v1 line, whose `P` was already read.
async fn read_v1<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut line = [0u8; PROXY_V1_MAX_LEN];
    line[0] = b'P';
    let mut len = 1;
    loop {
        if len == PROXY_V1_MAX_LEN {
            return Err(ProxyProtocolError::Malformed(format!(
                "v1 header longer than {PROXY_V1_MAX_LEN} bytes"
            )));
        }
        let b = stream.read_u8().await?;
        line[len] = b;
        len += 1;
        // Give up on the first byte that cannot start "PROXY " instead of reading a whole line
        // of, say, "POST / HTTP/1.1".
        if len <= V1_PREFIX.len() && b != V1_PREFIX[len - 1] {
            return Err(ProxyProtocolError::NotProxyProtocol);
        }
        if b == b'\n' {
            break;
        }
    }
    let line = &line[..len];
    if line[len - 2] != b'\r' {
        return Err(ProxyProtocolError::Malformed(
            "v1 header line ends with a bare LF instead of CRLF".into(),
        ));
    }
    let header = ppp::v1::Header::try_from(line)
        .map_err(|e| ProxyProtocolError::Malformed(format!("v1: {e}")))?;
    let (source, destination) = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Unknown => (None, None),
    };
    Ok(ProxyHeader {
        source,
        destination,
        version: 1,
    })
}

/// The rest of a v2 header, whose first signature byte was already read.
async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut fixed = [0u8; V2_FIXED_LEN];
    fixed[0] = 0x0D;
    stream.read_exact(&mut fixed[1..]).await?;
    if fixed[..V2_SIGNATURE.len()] != V2_SIGNATURE[..] {
        return Err(ProxyProtocolError::NotProxyProtocol);
    }
    let version = fixed[12] >> 4;
    if version != 2 {
        return Err(ProxyProtocolError::Malformed(format!(
            "v2 signature with unsupported version {version}"
        )));
    }
    let is_local = fixed[12] & 0x0F == 0;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut block = vec![0u8; V2_FIXED_LEN + len];
    block[..V2_FIXED_LEN].copy_from_slice(&fixed);
    stream.read_exact(&mut block[V2_FIXED_LEN..]).await?;

    let local = ProxyHeader {
        source: None,
        destination: None,
        version: 2,
    };
    let header = match ppp::v2::Header::try_from(&block[..]) {
        Ok(h) => h,
        // LOCAL: "the receiver must accept this connection as valid and must use the real
        // connection endpoints and discard the protocol block including the family which is
        // ignored" — so neither the family nor the address length can make it invalid.
        Err(_) if is_local => return Ok(local),
        Err(e) => return Err(ProxyProtocolError::Malformed(format!("v2: {e}"))),
    };
    if header.command == ppp::v2::Command::Local {
        return Ok(local);
    }
    if let Some(Err(e)) = header.tlvs().find(Result::is_err) {
        return Err(ProxyProtocolError::Malformed(format!("v2 TLVs: {e}")));
    }
    // Like HAProxy, use the addresses only for TCP over IPv4/IPv6 and keep the real connection
    // endpoints for anything else (UDP, unix sockets, unspecified).
    let (source, destination) = match (header.protocol, header.addresses) {
        (ppp::v2::Protocol::Stream, ppp::v2::Addresses::IPv4(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (ppp::v2::Protocol::Stream, ppp::v2::Addresses::IPv6(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        _ => (None, None),
    };
    Ok(ProxyHeader {
        source,
        destination,
        version: 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const T: Duration = Duration::from_secs(5);

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// Parse `bytes` from a slice reader; return the result and what was left unread.
    async fn parse(bytes: &[u8]) -> (Result<ProxyHeader, ProxyProtocolError>, Vec<u8>) {
        let mut rest = bytes;
        let r = read_proxy_header(&mut rest, T).await;
        (r, rest.to_vec())
    }

    fn v2(ver_cmd: u8, fam_proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam_proto);
        b.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    fn v2_tcp4_payload() -> Vec<u8> {
        let mut p = vec![192, 0, 2, 10, 10, 0, 0, 5];
        p.extend_from_slice(&51234u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        p
    }

    #[tokio::test]
    async fn v1_tcp4() {
        let (r, rest) = parse(b"PROXY TCP4 192.0.2.10 10.0.0.5 51234 443\r\nGET").await;
        let h = r.unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.source, sa("192.0.2.10:51234"));
        assert_eq!(h.destination, sa("10.0.0.5:443"));
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn v1_tcp6() {
        let (r, rest) = parse(b"PROXY TCP6 2001:db8::1 fd00::5 65535 80\r\n").await;
        let h = r.unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.source, sa("[2001:db8::1]:65535"));
        assert_eq!(h.destination, sa("[fd00::5]:80"));
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn v1_unknown_uses_real_addresses() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n",
        ] {
            let h = parse(line).await.0.unwrap();
            assert_eq!(
                h,
                ProxyHeader {
                    source: None,
                    destination: None,
                    version: 1
                }
            );
        }
    }

    #[tokio::test]
    async fn v1_longest_valid_line() {
        let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {ip} {ip} 65535 65535\r\n");
        let h = parse(line.as_bytes()).await.0.unwrap();
        assert_eq!(h.source.unwrap().port(), 65535);
        // The spec's worst case is UNKNOWN followed by the longest TCP6 addresses.
        let line = format!("PROXY UNKNOWN {ip} {ip} 65535 65535\r\n");
        assert_eq!(line.len(), PROXY_V1_MAX_LEN);
        let (r, rest) = parse(format!("{line}GET").as_bytes()).await;
        assert_eq!(r.unwrap().source, None);
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn v1_malformed_lines() {
        for line in [
            &b"PROXY TCP4 192.0.2.10 10.0.0.5 51234\r\n"[..], // missing port
            b"PROXY TCP4 2001:db8::1 10.0.0.5 1 2\r\n",       // wrong family
            b"PROXY TCP4 192.0.2.10 10.0.0.5 1 70000\r\n",    // port overflow
            b"PROXY TCP5 192.0.2.10 10.0.0.5 1 2\r\n",        // unknown protocol
            b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2\n",          // bare LF
        ] {
            let err = parse(line).await.0.unwrap_err();
            assert!(
                matches!(err, ProxyProtocolError::Malformed(_)),
                "{}: {err:?}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(err.metric_label(), "malformed");
        }
    }

    #[tokio::test]
    async fn v1_overlong_line_stops_at_the_limit() {
        let mut line = b"PROXY TCP4 ".to_vec();
        line.extend(std::iter::repeat_n(b'1', 200));
        line.extend_from_slice(b"\r\n");
        let (r, rest) = parse(&line).await;
        assert!(matches!(r, Err(ProxyProtocolError::Malformed(_))), "{r:?}");
        assert_eq!(rest.len(), line.len() - PROXY_V1_MAX_LEN);
    }

    #[tokio::test]
    async fn v2_tcp4_proxy() {
        let mut bytes = v2(0x21, 0x11, &v2_tcp4_payload());
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (r, rest) = parse(&bytes).await;
        let h = r.unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(h.source, sa("192.0.2.10:51234"));
        assert_eq!(h.destination, sa("10.0.0.5:443"));
        assert_eq!(rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn v2_tcp6_proxy() {
        let src: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: std::net::Ipv6Addr = "fd00::5".parse().unwrap();
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&8443u16.to_be_bytes());
        let h = parse(&v2(0x21, 0x21, &p)).await.0.unwrap();
        assert_eq!(h.source, sa("[2001:db8::1]:40000"));
        assert_eq!(h.destination, sa("[fd00::5]:8443"));
    }

    #[tokio::test]
    async fn v2_local_uses_real_addresses() {
        let none = ProxyHeader {
            source: None,
            destination: None,
            version: 2,
        };
        // The usual health-check form: LOCAL, AF_UNSPEC, no address block.
        assert_eq!(parse(&v2(0x20, 0x00, &[])).await.0.unwrap(), none);
        // LOCAL with an address block: the addresses are ignored.
        let (r, rest) = parse(&v2(0x20, 0x11, &v2_tcp4_payload())).await;
        assert_eq!(r.unwrap(), none);
        assert!(rest.is_empty());
        // LOCAL claiming AF_INET without the addresses: the family is ignored too.
        assert_eq!(parse(&v2(0x20, 0x11, &[])).await.0.unwrap(), none);
    }

    #[tokio::test]
    async fn v2_non_tcp_proxy_uses_real_addresses() {
        for fam_proto in [0x00, 0x12, 0x10] {
            let payload = if fam_proto == 0 {
                vec![]
            } else {
                v2_tcp4_payload()
            };
            let h = parse(&v2(0x21, fam_proto, &payload)).await.0.unwrap();
            assert_eq!((h.source, h.destination), (None, None), "{fam_proto:#x}");
        }
    }

    #[tokio::test]
    async fn v2_with_tlvs() {
        let mut p = v2_tcp4_payload();
        p.extend_from_slice(&[0x01, 0, 2]); // PP2_TYPE_ALPN
        p.extend_from_slice(b"h2");
        p.extend_from_slice(&[0x02, 0, 11]); // PP2_TYPE_AUTHORITY
        p.extend_from_slice(b"example.com");
        p.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]); // PP2_TYPE_NOOP
        let mut bytes = v2(0x21, 0x11, &p);
        bytes.extend_from_slice(b"next");
        let (r, rest) = parse(&bytes).await;
        let h = r.unwrap();
        assert_eq!(h.source, sa("192.0.2.10:51234"));
        assert_eq!(rest, b"next");
    }

    #[tokio::test]
    async fn v2_malformed() {
        let mut bad_tlv = v2_tcp4_payload();
        bad_tlv.extend_from_slice(&[0x02, 0, 50, b'x']); // announces 50 bytes, has 1
        let cases = [
            ("TLV overflow", v2(0x21, 0x11, &bad_tlv)),
            ("short address block", v2(0x21, 0x11, &[1, 2, 3, 4])),
            ("version 1 in binary", v2(0x11, 0x11, &v2_tcp4_payload())),
            ("unknown command", v2(0x22, 0x11, &v2_tcp4_payload())),
            ("unknown family", v2(0x21, 0x41, &v2_tcp4_payload())),
        ];
        for (what, bytes) in cases {
            let r = parse(&bytes).await.0;
            assert!(
                matches!(r, Err(ProxyProtocolError::Malformed(_))),
                "{what}: {r:?}"
            );
        }
    }

    #[tokio::test]
    async fn v2_bad_signature() {
        let mut bytes = v2(0x21, 0x11, &v2_tcp4_payload());
        bytes[11] = b'\r';
        let err = parse(&bytes).await.0.unwrap_err();
        assert!(
            matches!(err, ProxyProtocolError::NotProxyProtocol),
            "{err:?}"
        );
        assert_eq!(err.metric_label(), "not_proxy_protocol");
    }

    #[tokio::test]
    async fn not_proxy_protocol() {
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // TLS ClientHello
        ] {
            let (r, _) = parse(bytes).await;
            assert!(
                matches!(r, Err(ProxyProtocolError::NotProxyProtocol)),
                "{r:?}"
            );
        }
        // A request that happens to start with 'P' is rejected on its second byte.
        let (r, rest) = parse(b"POST / HTTP/1.1\r\n\r\n").await;
        assert!(
            matches!(r, Err(ProxyProtocolError::NotProxyProtocol)),
            "{r:?}"
        );
        assert_eq!(rest, b"ST / HTTP/1.1\r\n\r\n");
        let (r, _) = parse(b"PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n").await;
        assert!(
            matches!(r, Err(ProxyProtocolError::NotProxyProtocol)),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn truncated_header_is_eof() {
        let full_v2 = v2(0x21, 0x11, &v2_tcp4_payload());
        for bytes in [
            &b""[..],
            b"PROXY TCP4 192.0.2.10 10.0.0.5",
            b"PROXY TCP4 192.0.2.10 10.0.0.5 51234 443\r",
            &full_v2[..10],
            &full_v2[..full_v2.len() - 1],
        ] {
            let err = parse(bytes).await.0.unwrap_err();
            match &err {
                ProxyProtocolError::Io(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof)
                }
                other => panic!("{bytes:?}: {other:?}"),
            }
            assert_eq!(err.metric_label(), "eof");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_when_nothing_arrives() {
        let (_writer, mut reader) = tokio::io::duplex(64);
        let err = read_proxy_header(&mut reader, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyProtocolError::Timeout), "{err:?}");
        assert_eq!(err.metric_label(), "timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_bounds_the_whole_header() {
        let (mut writer, mut reader) = tokio::io::duplex(64);
        // Trickle one byte a second: each read is quick, the header as a whole is not.
        let trickle = tokio::spawn(async move {
            for b in b"PROXY TCP4 192.0.2.10 10.0.0.5 51234 443\r\n" {
                if writer.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let start = tokio::time::Instant::now();
        let err = read_proxy_header(&mut reader, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyProtocolError::Timeout), "{err:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        drop(reader);
        trickle.await.unwrap();
    }

    #[tokio::test]
    async fn bytes_after_the_header_stay_in_the_stream() {
        let mut v2_bytes = v2(0x21, 0x11, &v2_tcp4_payload());
        v2_bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        for bytes in [
            b"PROXY TCP4 192.0.2.10 10.0.0.5 51234 443\r\nGET / HTTP/1.1\r\n".to_vec(),
            v2_bytes,
        ] {
            let (mut writer, mut reader) = tokio::io::duplex(1024);
            writer.write_all(&bytes).await.unwrap();
            drop(writer);
            let h = read_proxy_header(&mut reader, T).await.unwrap();
            assert_eq!(h.source, sa("192.0.2.10:51234"));
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        }
    }

    #[test]
    fn error_messages_and_labels() {
        let e = ProxyProtocolError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(e.metric_label(), "io");
        assert!(ProxyProtocolError::Malformed("x".into())
            .to_string()
            .contains("malformed"));
    }
}
