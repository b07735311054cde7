//! The HTTP/1.1 subset the built-in server and the generator speak, as encoders and incremental
//! parsers over byte buffers (no I/O here, so the hot paths are benchmarked and tested alone).
//!
//! Requests are encoded once per run into templates (one keep-alive, one closing); responses are
//! parsed with `httparse` and framed by `Content-Length`, chunked transfer coding, or the end of
//! the connection, so any HTTP/1.1 server can be measured, not only `sdnbed serve`. The version
//! that served a response is read from the [`VERSION_HEADER`] header.

/// The header every response of `sdnbed serve` carries, naming the version that served it.
pub const VERSION_HEADER: &str = "x-sdnbed-version";

/// Versions longer than this are cut to this many bytes when attributed.
pub const MAX_VERSION_LEN: usize = 48;

/// Why bytes were not valid HTTP for us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    #[error("HTTP head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("unsupported HTTP feature: {0}")]
    Unsupported(&'static str),
}

/// Heads above this size are rejected (both directions).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 48;

/// The bytes of the two requests a generator sends: one that keeps the connection alive and one
/// that asks the server to close it (last request on a connection).
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    keep_alive: Vec<u8>,
    close: Vec<u8>,
}

impl RequestTemplate {
    /// `GET path` without a body when `body` is 0, otherwise `POST path` with `body` bytes.
    pub fn new(host: &str, path: &str, body: usize) -> Self {
        let build = |close: bool| {
            let method = if body == 0 { "GET" } else { "POST" };
            let mut v =
                format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: sdnbed\r\n")
                    .into_bytes();
            if body > 0 {
                v.extend_from_slice(
                    format!("content-type: application/octet-stream\r\ncontent-length: {body}\r\n")
                        .as_bytes(),
                );
            }
            if close {
                v.extend_from_slice(b"connection: close\r\n");
            }
            v.extend_from_slice(b"\r\n");
            v.resize(v.len() + body, b'x');
            v
        };
        RequestTemplate {
            keep_alive: build(false),
            close: build(true),
        }
    }
    pub fn bytes(&self, close: bool) -> &[u8] {
        if close {
            &self.close
        } else {
            &self.keep_alive
        }
    }
}

/// What a generator needs from a response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    version: [u8; MAX_VERSION_LEN],
    version_len: u8,
    has_version: bool,
}

impl ResponseHead {
    /// The `x-sdnbed-version` value, if the server sent one (as UTF-8; other bytes are lost).
    pub fn version(&self) -> Option<&str> {
        if !self.has_version {
            return None;
        }
        let bytes = &self.version[..usize::from(self.version_len)];
        Some(std::str::from_utf8(bytes).unwrap_or("(non-utf8)"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Head,
    Length(u64),
    /// Chunked: inside a size line (accumulated value, seen a digit, in extension).
    ChunkSize {
        size: u64,
        digits: bool,
        ext: bool,
    },
    ChunkSizeLf {
        size: u64,
    },
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk: trailer lines until an empty one. `line_len` counts the current line.
    Trailer {
        line_len: usize,
        cr: bool,
    },
    UntilClose,
    Done,
}

/// Incremental response parser: feed it what arrived, it says how much it consumed and whether
/// the response is complete. One reader per response; [`ResponseReader::reset`] reuses it.
#[derive(Clone, Debug)]
pub struct ResponseReader {
    framing: Framing,
    head: ResponseHead,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            framing: Framing::Head,
            head: ResponseHead {
                status: 0,
                close: false,
                version: [0; MAX_VERSION_LEN],
                version_len: 0,
                has_version: false,
            },
        }
    }
    pub fn reset(&mut self) {
        *self = Self::new();
    }
    /// The head, once parsed.
    pub fn head(&self) -> Option<&ResponseHead> {
        (self.framing != Framing::Head).then_some(&self.head)
    }
    pub fn is_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Consumes a prefix of `buf`; returns its length. The response is complete when
    /// [`is_done`](Self::is_done) turns true; bytes after it belong to the next response.
    pub fn advance(&mut self, buf: &[u8]) -> Result<usize, HttpError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.framing {
                Framing::Done => return Ok(used),
                Framing::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    match resp.parse(rest) {
                        Ok(httparse::Status::Partial) => {
                            if rest.len() > MAX_HEAD {
                                return Err(HttpError::HeadTooLarge(MAX_HEAD));
                            }
                            return Ok(used);
                        }
                        Err(e) => return Err(HttpError::Malformed(e.to_string())),
                        Ok(httparse::Status::Complete(n)) => {
                            let status = resp.code.unwrap_or(0);
                            let mut length = None;
                            let mut chunked = false;
                            self.head.close = resp.version == Some(0);
                            for h in resp.headers.iter() {
                                if h.name.eq_ignore_ascii_case("content-length") {
                                    let v = std::str::from_utf8(h.value)
                                        .ok()
                                        .and_then(|s| s.trim().parse::<u64>().ok())
                                        .ok_or_else(|| {
                                            HttpError::Malformed("bad content-length".into())
                                        })?;
                                    length = Some(v);
                                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                    chunked = h.value.eq_ignore_ascii_case(b"chunked")
                                        || h.value.to_ascii_lowercase().ends_with(b"chunked");
                                } else if h.name.eq_ignore_ascii_case("connection") {
                                    if h.value.eq_ignore_ascii_case(b"close") {
                                        self.head.close = true;
                                    } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                                        self.head.close = false;
                                    }
                                } else if h.name.eq_ignore_ascii_case(VERSION_HEADER) {
                                    let n = h.value.len().min(MAX_VERSION_LEN);
                                    self.head.version[..n].copy_from_slice(&h.value[..n]);
                                    self.head.version_len = n as u8;
                                    self.head.has_version = true;
                                }
                            }
                            self.head.status = status;
                            used += n;
                            let bodiless = status / 100 == 1 || status == 204 || status == 304;
                            self.framing = if bodiless {
                                Framing::Done
                            } else if chunked {
                                Framing::ChunkSize {
                                    size: 0,
                                    digits: false,
                                    ext: false,
                                }
                            } else if let Some(len) = length {
                                if len == 0 {
                                    Framing::Done
                                } else {
                                    Framing::Length(len)
                                }
                            } else {
                                self.head.close = true;
                                Framing::UntilClose
                            };
                        }
                    }
                }
                Framing::Length(left) => {
                    let take = (rest.len() as u64).min(left);
                    used += take as usize;
                    self.framing = if take == left {
                        Framing::Done
                    } else {
                        Framing::Length(left - take)
                    };
                    if self.framing != Framing::Done {
                        return Ok(used);
                    }
                }
                Framing::ChunkData(left) => {
                    let take = (rest.len() as u64).min(left);
                    used += take as usize;
                    if take < left {
                        self.framing = Framing::ChunkData(left - take);
                        return Ok(used);
                    }
                    self.framing = Framing::ChunkDataCr;
                }
                Framing::UntilClose => return Ok(buf.len()),
                _ => {
                    // Byte-at-a-time states of chunked framing.
                    let Some(&b) = rest.first() else {
                        return Ok(used);
                    };
                    used += 1;
                    self.framing = chunk_step(self.framing, b)?;
                }
            }
        }
    }

    /// The connection reached end of file: completes a response framed by the close, and says
    /// whether the response is now complete.
    pub fn finish_at_eof(&mut self) -> bool {
        if self.framing == Framing::UntilClose {
            self.framing = Framing::Done;
        }
        self.is_done()
    }
}

fn chunk_step(state: Framing, b: u8) -> Result<Framing, HttpError> {
    let bad = |what: &str| Err(HttpError::Malformed(format!("chunked body: {what}")));
    Ok(match state {
        Framing::ChunkSize { size, digits, ext } => match b {
            b'\r' if digits => Framing::ChunkSizeLf { size },
            _ if ext => state,
            b';' | b' ' | b'\t' if digits => Framing::ChunkSize {
                size,
                digits,
                ext: true,
            },
            _ => {
                let d = (b as char).to_digit(16).map(u64::from);
                match d {
                    Some(d) if size < (1 << 56) => Framing::ChunkSize {
                        size: size * 16 + d,
                        digits: true,
                        ext,
                    },
                    _ => return bad("bad size"),
                }
            }
        },
        Framing::ChunkSizeLf { size } => match (b, size) {
            (b'\n', 0) => Framing::Trailer {
                line_len: 0,
                cr: false,
            },
            (b'\n', n) => Framing::ChunkData(n),
            _ => return bad("missing LF after size"),
        },
        Framing::ChunkDataCr if b == b'\r' => Framing::ChunkDataLf,
        Framing::ChunkDataLf if b == b'\n' => Framing::ChunkSize {
            size: 0,
            digits: false,
            ext: false,
        },
        Framing::Trailer { line_len, cr } => match (b, cr) {
            (b'\r', false) => Framing::Trailer { line_len, cr: true },
            (b'\n', true) if line_len == 0 => Framing::Done,
            (b'\n', true) => Framing::Trailer {
                line_len: 0,
                cr: false,
            },
            _ if line_len > MAX_HEAD => return Err(HttpError::HeadTooLarge(MAX_HEAD)),
            _ => Framing::Trailer {
                line_len: line_len + 1,
                cr: false,
            },
        },
        _ => return bad("missing CRLF after data"),
    })
}

/// Where a request goes on the built-in server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /ready`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// Anything else: a workload request, served by a worker.
    Work,
}

/// A complete request as the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub route: Route,
    /// The client asked to close (`connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// Head plus body: the bytes to drop from the buffer.
    pub len: usize,
}

/// Parses one complete request (head and `Content-Length` body) from the front of `buf`;
/// `Ok(None)` if more bytes are needed.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(HttpError::HeadTooLarge(MAX_HEAD))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    let mut close = req.version == Some(0);
    let mut body = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| HttpError::Malformed("bad content-length".into()))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Unsupported("chunked request bodies"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if h.value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let len = head_len
        .checked_add(body)
        .ok_or_else(|| HttpError::Malformed("body too large".into()))?;
    if buf.len() < len {
        return Ok(None);
    }
    let get = req.method == Some("GET");
    let route = match req.path {
        Some("/ready") if get => Route::Ready,
        Some("/metrics") if get => Route::Metrics,
        _ => Route::Work,
    };
    Ok(Some(RequestHead { route, close, len }))
}

/// Appends a complete response to `out`. A `version` is sent as `x-sdnbed-version` (`None`:
/// no such header, as a foreign server would answer); `close` adds `connection: close`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    version: Option<&str>,
    close: bool,
    content_type: &str,
    body: &[u8],
) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nserver: sdnbed");
    if let Some(version) = version {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(VERSION_HEADER.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(version.as_bytes());
    }
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    push_decimal(out, body.len() as u64);
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut ResponseReader, bytes: &[u8], step: usize) -> usize {
        let mut used = 0;
        let mut avail = 0;
        while !r.is_done() {
            if avail == bytes.len() {
                break;
            }
            avail = (avail + step).min(bytes.len());
            used += r.advance(&bytes[used..avail]).unwrap();
        }
        used
    }

    #[test]
    fn request_template_is_valid_http() {
        let t = RequestTemplate::new("127.0.0.1:80", "/", 5);
        let head = parse_request(t.bytes(false)).unwrap().unwrap();
        assert_eq!(
            head,
            RequestHead {
                route: Route::Work,
                close: false,
                len: t.bytes(false).len()
            }
        );
        assert!(parse_request(t.bytes(true)).unwrap().unwrap().close);
        assert!(t.bytes(false).starts_with(b"POST / HTTP/1.1\r\n"));
        let get = RequestTemplate::new("h", "/ready", 0);
        assert_eq!(
            parse_request(get.bytes(false)).unwrap().unwrap().route,
            Route::Ready
        );
        // A partial request needs more bytes.
        assert_eq!(
            parse_request(&t.bytes(false)[..t.bytes(false).len() - 1]).unwrap(),
            None
        );
    }

    #[test]
    fn responses_round_trip_byte_by_byte_and_pipelined() {
        let mut wire = Vec::new();
        write_response(&mut wire, 200, Some("v2"), false, "text/plain", b"hello");
        let first = wire.len();
        write_response(&mut wire, 500, Some("v2"), true, "text/plain", b"");
        for step in [1, 7, wire.len()] {
            let mut r = ResponseReader::new();
            let used = read_all(&mut r, &wire[..first], step);
            assert_eq!(used, first);
            let h = *r.head().unwrap();
            assert_eq!((h.status, h.close, h.version()), (200, false, Some("v2")));
            r.reset();
            assert_eq!(r.advance(&wire[first..]).unwrap(), wire.len() - first);
            let h = r.head().unwrap();
            assert_eq!((h.status, h.close), (500, true));
        }
    }

    #[test]
    fn a_response_without_version_has_no_version_header() {
        let mut wire = Vec::new();
        write_response(&mut wire, 200, None, true, "text/plain", b"hi");
        assert_eq!(
            wire,
            b"HTTP/1.1 200 OK\r\nserver: sdnbed\r\ncontent-type: text/plain\r\n\
              content-length: 2\r\nconnection: close\r\n\r\nhi"
        );
        let mut r = ResponseReader::new();
        assert_eq!(r.advance(&wire).unwrap(), wire.len());
        assert_eq!(r.head().unwrap().version(), None);
    }

    #[test]
    fn chunked_and_close_framed_responses() {
        let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for step in [1, 3, wire.len()] {
            let mut r = ResponseReader::new();
            assert_eq!(read_all(&mut r, wire, step), wire.len() - 4, "step {step}");
            assert!(r.is_done());
            assert_eq!(r.head().unwrap().version(), None);
        }
        let mut r = ResponseReader::new();
        let wire = b"HTTP/1.0 200 OK\r\n\r\nbody until eof";
        assert_eq!(r.advance(wire).unwrap(), wire.len());
        assert!(!r.is_done());
        assert!(r.finish_at_eof());
        assert!(r.head().unwrap().close);
        let mut bad = ResponseReader::new();
        assert!(bad
            .advance(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
            .is_err());
    }
}
