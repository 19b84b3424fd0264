//! HTTP/2 server limits for the TLS listener (h2 via ALPN), as nginx's defaults in ingress-nginx.

use pingora::protocols::http::v2::server::H2Options;

/// Most concurrent streams per connection (nginx `http2_max_concurrent_streams`, ingress-nginx
/// `http2-max-concurrent-streams` default 128).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Largest decoded header list of one request, in bytes (RFC 9113 accounting: name + value +
/// 32 per field, so every Cookie crumb counts): ingress-nginx's `large-client-header-buffers`
/// default `4 8k`.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 32 * 1024;
/// HPACK dynamic table the client may make Weir keep, in bytes (the protocol default).
pub const H2_HEADER_TABLE_SIZE: u32 = 4096;
/// Streams a client may open and reset before Weir accepts them (Rapid Reset, CVE-2023-44487):
/// beyond this the connection is closed with `ENHANCE_YOUR_CALM`.
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams Weir may reset for protocol errors on one connection before closing it.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Reset streams remembered per connection.
pub const H2_MAX_CONCURRENT_RESETS: usize = 10;
/// Response bytes buffered per stream while the client's flow-control window is closed.
pub const H2_MAX_SEND_BUFFER: usize = 256 * 1024;

/// The HTTP/2 server settings Weir's listeners use.
pub fn h2_server_options() -> H2Options {
    let mut options = H2Options::default();
    options
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .header_table_size(H2_HEADER_TABLE_SIZE)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS))
        .max_concurrent_reset_streams(H2_MAX_CONCURRENT_RESETS)
        .max_send_buffer_size(H2_MAX_SEND_BUFFER);
    options
}
