//! TUN devices (`ip tuntap add mode tun`, but owned by a descriptor: non-persistent).
//!
//! A TUN device is created by opening `/dev/net/tun` from a thread that has joined the target
//! namespace, and `TUNSETIFF` with `IFF_TUN | IFF_NO_PI | IFF_VNET_HDR`: each packet is an IP
//! packet behind a `virtio_net_hdr`, the device is point-to-point without ARP. It announces
//! checksum and TCP/IPv4 segmentation offload (`TUNSETOFFLOAD`), so senders hand it TCP
//! super-packets, which the emulator cuts into segments ([`crate::linkemu::gso`]). Not persistent: the device disappears when the last
//! descriptor closes (the emulator stops or its process dies) or when its namespace is deleted,
//! whichever comes first; so it can never outlive both the owning process and the run's
//! namespaces, which the run's ledger lists.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::dataplane::netlink::{in_netns, netns_path};

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;

const SIOCSIFTXQLEN: libc::c_ulong = 0x8943;
/// The device queue in front of the emulator (`ip link set … txqueuelen`): packets wait there
/// only while the packet thread is not running; the default 500 lost packets before the model
/// saw them when the thread was preempted for a few milliseconds on a loaded machine.
pub const TXQUEUELEN: i32 = 10_000;

/// `ip link set NAME txqueuelen LEN` in the calling thread's namespace.
fn set_txqueuelen(name: &str, len: i32) -> io::Result<()> {
    #[repr(C)]
    struct IfReqInt {
        name: [u8; libc::IFNAMSIZ],
        value: libc::c_int,
        _pad: [u8; 20],
    }
    let mut req = IfReqInt {
        name: [0; libc::IFNAMSIZ],
        value: len,
        _pad: [0; 20],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a datagram socket for the ioctl, closed when `sock` drops.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCSIFTXQLEN reads a struct ifreq with an int member, as IfReqInt lays out.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFTXQLEN as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct ifreq` with the flags member of its union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TUN device: its descriptor (non-blocking) and interface index.
#[derive(Debug)]
pub struct Tun {
    pub fd: OwnedFd,
    pub ifindex: u32,
    pub name: String,
}

/// Creates TUN device `name` in namespace `ns` (a name under `/run/sdnbed/netns`).
pub fn create(ns: &str, name: &str) -> io::Result<Tun> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{name}` must have 1 to 15 bytes"),
        ));
    }
    let nsf = File::open(netns_path(ns))?;
    in_netns(nsf.as_fd(), || {
        // SAFETY: open returns a new descriptor or -1; the path is a NUL-terminated literal.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReqFlags lays out.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: TUNSETOFFLOAD takes the offload flags as its unsigned long argument.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                TUNSETOFFLOAD as _,
                libc::c_ulong::from(TUN_F_CSUM | TUN_F_TSO4),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        set_txqueuelen(name, TXQUEUELEN)?;
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: a valid C string; the lookup runs in this thread's (the target) namespace.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tun {
            fd,
            ifindex,
            name: name.to_string(),
        })
    })
}
