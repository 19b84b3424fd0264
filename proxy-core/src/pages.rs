//! The HTML pages Weir answers with itself, in nginx's look (redirects, errors, the built-in
//! default backend).

/// The page for `status`, if Weir has one.
pub(crate) fn page(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "<html>\r\n<head><title>301 Moved Permanently</title></head>\r\n<body>\r\n<center><h1>301 Moved Permanently</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        302 => "<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n<center><h1>302 Found</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        307 => "<html>\r\n<head><title>307 Temporary Redirect</title></head>\r\n<body>\r\n<center><h1>307 Temporary Redirect</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        308 => "<html>\r\n<head><title>308 Permanent Redirect</title></head>\r\n<body>\r\n<center><h1>308 Permanent Redirect</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        400 => "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        401 => "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        403 => "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        404 => "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        408 => "<html>\r\n<head><title>408 Request Time-out</title></head>\r\n<body>\r\n<center><h1>408 Request Time-out</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        413 => "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        429 => "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        501 => "<html>\r\n<head><title>501 Not Implemented</title></head>\r\n<body>\r\n<center><h1>501 Not Implemented</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        502 => "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        503 => "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        504 => "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_name_their_status() {
        for status in [
            301, 302, 307, 308, 400, 401, 403, 404, 408, 413, 429, 501, 502, 503, 504,
        ] {
            let page = super::page(status).unwrap();
            assert!(page.contains(&format!("<title>{status} ")), "{status}");
        }
        assert_eq!(super::page(200), None);
    }
}
