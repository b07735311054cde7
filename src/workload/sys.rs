//! The thin layer over Linux system calls that the server, the generator and the link
//! emulator's packet thread share: epoll, non-blocking TCP sockets, eventfd, timerfd, clocks.
//!
//! Everything here is a direct, documented wrapper of one kernel facility; the event loops above
//! it hold all the logic. File descriptors are owned (`OwnedFd`, `TcpStream`), so they close on
//! drop even when a loop returns early with an error.

use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Readiness bits as epoll reports them.
pub const READABLE: u32 = libc::EPOLLIN as u32;
pub const WRITABLE: u32 = libc::EPOLLOUT as u32;
const HANGUP: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// One readiness event: the token given at registration and what is ready.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub token: u64,
    pub bits: u32,
}

impl Event {
    pub fn readable(&self) -> bool {
        self.bits & (READABLE | HANGUP) != 0
    }
    pub fn writable(&self) -> bool {
        self.bits & (WRITABLE | HANGUP) != 0
    }
    /// An error or a hang-up in both directions (always reported, whatever the interest).
    pub fn hangup(&self) -> bool {
        self.bits & HANGUP != 0
    }
}

/// An epoll instance (`epoll_create1(EPOLL_CLOEXEC)`), level-triggered.
pub struct Poller {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain system call; the returned descriptor is owned below.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(16)],
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest,
            u64: token,
        };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)`.
    pub fn add(&self, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }
    /// `epoll_ctl(EPOLL_CTL_MOD)`.
    pub fn modify(&self, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }
    /// `epoll_ctl(EPOLL_CTL_DEL)`; closing a descriptor also removes it.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// `epoll_wait`; `block` false polls without sleeping. Interrupted waits return no events.
    pub fn wait(&mut self, block: bool, out: &mut Vec<Event>) -> io::Result<()> {
        out.clear();
        let timeout = if block { -1 } else { 0 };
        // SAFETY: the buffer holds `events.len()` initialised entries the kernel may overwrite.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        out.extend(self.events[..n as usize].iter().map(|e| Event {
            token: e.u64,
            bits: e.events,
        }));
        Ok(())
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; we fill the family-specific prefix.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn new_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain system call; the descriptor is owned right away.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_congestion_control(fd.as_raw_fd());
    Ok(fd)
}

/// The congestion control of every socket the built-in server and load generator open
/// (accepted sockets inherit the listener's).
pub const CONGESTION_CONTROL: &str = "cubic";

/// `setsockopt(TCP_CONGESTION, "cubic")`: CUBIC, Linux's built-in default and what the
/// simulator models ([`crate::model::tcp`]), whatever the host's default is (some hosts run
/// BBR, which paces and recovers differently), so that loss means the same on both backends.
/// Per socket because a network namespace may only pick a default from
/// `tcp_allowed_congestion_control`, while a socket with `CAP_NET_ADMIN` may pick any
/// algorithm the kernel has. Best effort: if the kernel refuses (no CUBIC, or not allowed
/// without the capability), the socket keeps the host's default.
fn set_congestion_control(fd: RawFd) {
    let name = CONGESTION_CONTROL.as_bytes();
    // SAFETY: `name` outlives the call and its length is passed.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr() as *const libc::c_void,
            name.len() as u32,
        )
    };
}

fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as u32,
        )
    })
    .map(drop)
}

/// A non-blocking listener (`socket`, `SO_REUSEADDR`, optionally `SO_REUSEPORT`, `bind`,
/// `listen(backlog)`). With `reuse_port`, several processes can listen on one port and the
/// kernel spreads new connections over them; one of them can then drain and leave.
pub fn listen(addr: &SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<TcpListener> {
    let fd = new_socket(addr)?;
    let raw = fd.as_raw_fd();
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let (sa, len) = sockaddr(addr);
    // SAFETY: `sa` holds a valid address of length `len`.
    cvt(unsafe { libc::bind(raw, &sa as *const _ as *const libc::sockaddr, len) })?;
    // SAFETY: plain system call on an owned descriptor.
    cvt(unsafe { libc::listen(raw, backlog) })?;
    Ok(TcpListener::from(fd))
}

/// Accepts one connection as non-blocking with `TCP_NODELAY` (`accept4(SOCK_NONBLOCK)`);
/// `Ok(None)` when the backlog is empty.
pub fn accept(listener: &TcpListener) -> io::Result<Option<TcpStream>> {
    // SAFETY: null address pointers are allowed by accept4.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            // The peer gave up before we accepted; try the next one.
            io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => accept(listener),
            _ => Err(e),
        };
    }
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    // SAFETY: fresh descriptor from accept4.
    Ok(Some(unsafe { TcpStream::from_raw_fd(fd) }))
}

/// Starts a non-blocking connect (`connect` returning `EINPROGRESS`), with `TCP_NODELAY`.
/// Returns the stream and whether the connection is already established. A refusal may show
/// up here (`ConnectionRefused`) or later through [`take_socket_error`].
pub fn connect(addr: &SocketAddr) -> io::Result<(TcpStream, bool)> {
    let fd = new_socket(addr)?;
    let raw = fd.as_raw_fd();
    set_int_opt(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let (sa, len) = sockaddr(addr);
    // SAFETY: `sa` holds a valid address of length `len`.
    let r = unsafe { libc::connect(raw, &sa as *const _ as *const libc::sockaddr, len) };
    let stream = TcpStream::from(fd);
    if r == 0 {
        return Ok((stream, true));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok((stream, false))
    } else {
        Err(e)
    }
}

/// `getsockopt(SO_ERROR)`: the outcome of a non-blocking connect once the socket is writable.
pub fn take_socket_error(stream: &TcpStream) -> io::Result<()> {
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// An eventfd (`eventfd(0, EFD_NONBLOCK)`): a cross-thread wake-up that epoll can wait on.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain system call; the descriptor is owned right away.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fresh descriptor.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
    /// Adds one to the counter, waking any waiter.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) still wakes waiters.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }
    /// Resets the counter.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (already zero) is fine.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

/// Reads `CLOCK_MONOTONIC` in nanoseconds (vDSO, no system call).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Reads `CLOCK_REALTIME` (wall-clock time) in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// Sets the calling thread's timer slack to 1 ns (`prctl(PR_SET_TIMERSLACK, 1)`); the default
/// 50 µs slack would otherwise delay every sleep by up to that much.
pub fn set_min_timer_slack() {
    // SAFETY: plain prctl on the calling thread; failure leaves the default slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// A timerfd on `CLOCK_MONOTONIC` armed with absolute deadlines (`TFD_TIMER_ABSTIME`).
pub struct TimerFd(OwnedFd);

impl TimerFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain system call; the descriptor is owned right away.
        let fd = cvt(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        // SAFETY: fresh descriptor.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
    /// Arms the timer to fire at monotonic time `at_ns` (0 disarms it).
    pub fn set_abs(&self, at_ns: u64) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(0),
            it_value: timespec(at_ns),
        };
        // SAFETY: `spec` outlives the call; the old value is not requested.
        cvt(unsafe {
            libc::timerfd_settime(
                self.0.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        })
        .map(drop)
    }
    /// Consumes the expiration count so the descriptor stops being readable.
    pub fn ack(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN is fine.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

/// `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` until `at_ns`, resumed after signals.
pub fn sleep_until_abs(at_ns: u64) {
    let ts = timespec(at_ns);
    loop {
        // SAFETY: `ts` is valid; the remainder pointer may be null with TIMER_ABSTIME.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            return;
        }
    }
}

/// Raises the process's soft limit on open files to its hard limit (`setrlimit(RLIMIT_NOFILE)`)
/// and returns the new limit: a generator with a connection per request or a server with many
/// clients needs more than the usual 1024 descriptors.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid in-pointer.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(lim.rlim_cur)
}

/// A receive buffer: bytes are read into its free tail and consumed from its head, without
/// zeroing or shifting on the hot path (it compacts only when the tail is full, and grows up to
/// `max` when a message does not fit).
#[derive(Debug)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl InBuf {
    pub fn new(capacity: usize, max: usize) -> Self {
        InBuf {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            max: max.max(capacity),
        }
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
    /// One `read` into the free tail. `Ok(0)` is end of file; a buffer at `max` that holds
    /// unconsumed bytes reports `InvalidData` (the peer's message is too large).
    pub fn read_from(&mut self, r: &mut impl io::Read) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < self.max {
                let len = (self.buf.len() * 2).min(self.max);
                self.buf.resize(len, 0);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "message larger than the receive buffer",
                ));
            }
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbuf_compacts_and_grows() {
        let mut b = InBuf::new(4, 8);
        let mut src: &[u8] = b"abcdefghijkl";
        assert_eq!(b.read_from(&mut src).unwrap(), 4);
        b.consume(3);
        assert_eq!(b.data(), b"d");
        // Full tail with a consumed head: compacts, then reads 3 more.
        assert_eq!(b.read_from(&mut src).unwrap(), 3);
        assert_eq!(b.data(), b"defg");
        // Full and nothing consumed: grows to the maximum.
        assert_eq!(b.read_from(&mut src).unwrap(), 4);
        assert_eq!(b.data(), b"defghijk");
        assert_eq!(
            b.read_from(&mut src).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        b.consume(8);
        assert!(b.is_empty());
    }
}
