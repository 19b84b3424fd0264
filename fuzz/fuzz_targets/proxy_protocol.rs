//! PROXY protocol v1/v2 header reader (`proxy_core::read_proxy_header`) on arbitrary
//! bytes: it must never panic, must consume only the header, and whatever it accepts must
//! re-encode (as v1 and as v2) into a header that reads back the same addresses.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use proxy_core::{
    read_proxy_header as read_header, ProxyHeader, ProxyProtocolError,
    PROXY_V1_MAX_LEN as V1_MAX_LEN,
};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
});

/// The v2 signature (12 bytes) every binary header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Read a header from `bytes`; the result and how many bytes it consumed.
fn read(bytes: &[u8]) -> (Result<ProxyHeader, ProxyProtocolError>, usize) {
    let mut rest = bytes;
    let r = RT.block_on(read_header(&mut rest, Duration::from_secs(5)));
    (r, bytes.len() - rest.len())
}

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut payload = Vec::new();
    let fam = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            payload.extend_from_slice(&s.ip().octets());
            payload.extend_from_slice(&d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            payload.extend_from_slice(&s.ip().octets());
            payload.extend_from_slice(&d.ip().octets());
            0x21
        }
        _ => unreachable!("mixed families were rejected before"),
    };
    payload.extend_from_slice(&src.port().to_be_bytes());
    payload.extend_from_slice(&dst.port().to_be_bytes());
    let mut b = V2_SIGNATURE.to_vec();
    b.push(0x21); // version 2, PROXY
    b.push(fam); // TCP over IPv4 / IPv6
    b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    b.extend_from_slice(&payload);
    b
}

fuzz_target!(|data: &[u8]| {
    let (result, consumed) = read(data);
    assert!(consumed <= data.len());
    let Ok(h) = result else { return };
    let header = &data[..consumed];
    match h.version {
        1 => {
            // One CRLF-terminated "PROXY " line, within the spec's limit.
            assert!(consumed <= V1_MAX_LEN, "v1 header of {consumed} bytes");
            assert!(header.starts_with(b"PROXY "), "{header:?}");
            assert!(header.ends_with(b"\r\n"), "{header:?}");
            assert_eq!(
                header.iter().filter(|&&b| b == b'\n').count(),
                1,
                "{header:?}"
            );
        }
        2 => {
            // The fixed part plus exactly the length it announces.
            assert!(consumed >= 16);
            assert_eq!(&header[..12], V2_SIGNATURE);
            let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
            assert_eq!(consumed, 16 + len);
        }
        v => panic!("accepted a header of version {v}"),
    }
    match (h.source, h.destination) {
        (None, None) => {}
        (Some(src), Some(dst)) => {
            assert_eq!(src.is_ipv4(), dst.is_ipv4(), "mixed families {h:?}");
            // Re-encode both ways: the same addresses must read back, and nothing is left over.
            for (version, bytes) in [(1, v1(src, dst)), (2, v2(src, dst))] {
                let (again, used) = read(&bytes);
                let again = again.unwrap_or_else(|e| panic!("{h:?} re-encoded as v{version}: {e}"));
                assert_eq!(used, bytes.len());
                assert_eq!(
                    (again.source, again.destination, again.version),
                    (h.source, h.destination, version)
                );
            }
        }
        _ => panic!("only one address {h:?}"),
    }
});
