//! When a packet entered the link, as the kernel saw it: a packet tap on each TUN device.
//!
//! The packet thread reads a packet some time after the node's stack sent it: at once while it
//! busy-polls, but after a wake-up, or after a CPU became free, when it slept or was
//! preempted. Taking the entry time at the `read` would count that wait as link delay (on an
//! idle VM a wake-up takes 50–200 µs). So each TUN device has an `AF_PACKET` socket bound to it
//! in the node's namespace, which sees every packet the node sends into it, with the kernel's
//! timestamp taken in the sender's context (`dev_queue_xmit_nit`, just before the packet is
//! queued to the TUN device: what `tcpdump` shows). A classic BPF filter keeps only outgoing
//! packets and their first [`SNAP`] bytes, and the socket's receive ring (`PACKET_RX_RING`,
//! `TPACKET_V2`) is shared memory, so looking a packet up costs no system call.
//!
//! [`EntryTap::entered`] matches the packet just read from the device against the ring in
//! order: packets leave the tap and the device in the same order, so the match is the first
//! frame whose length and first bytes are the packet's, and frames before it are packets the
//! device dropped (its queue was full). A packet the tap missed (its ring was full) has no
//! match and the caller keeps the read time. Cost: the kernel clones each sent packet's
//! header once more (per TCP super-packet, not per segment) and copies [`SNAP`] bytes.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};

use crate::dataplane::netlink::{in_netns, netns_path};

/// Bytes of each packet kept (IP and TCP headers: enough to tell packets apart).
pub const SNAP: u32 = 64;
const FRAME: u32 = 256;
const BLOCK: u32 = 16_384;
const BLOCKS: u32 = 8;
/// Frames in the ring: how many packets may wait in the device before the tap misses some.
const FRAMES: u32 = BLOCK / FRAME * BLOCKS;
/// How many leading bytes must agree for a match.
const MATCH: usize = 40;
const TPACKET_V2: libc::c_int = 1;

/// The tap of one TUN device: its packet socket and receive ring.
pub struct EntryTap {
    _fd: OwnedFd,
    ring: *mut u8,
    head: u32,
}

// SAFETY: the ring is memory this value alone reads and writes (with the kernel), mapped for as
// long as it lives; moving it to the packet thread moves that ownership.
unsafe impl Send for EntryTap {}

impl Drop for EntryTap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.ring.cast(), (BLOCK * BLOCKS) as usize) };
    }
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` outlives the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

impl EntryTap {
    /// A tap on interface `ifindex` of namespace `ns` (a name under `/run/sdnbed/netns`).
    pub fn open(ns: &str, ifindex: u32) -> io::Result<EntryTap> {
        let nsf = File::open(netns_path(ns))?;
        in_netns(nsf.as_fd(), || EntryTap::open_here(ifindex))
    }

    fn open_here(ifindex: u32) -> io::Result<EntryTap> {
        // Protocol 0: nothing is received until the bind below, after the filter and ring.
        // SAFETY: plain system call; the descriptor is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Accept outgoing packets (the node's), SNAP bytes of each; drop the rest.
        let pkttype = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
        let mut prog = [
            bpf(BPF_LD | BPF_B | BPF_ABS, 0, 0, pkttype),
            bpf(
                BPF_JMP | BPF_JEQ | BPF_K,
                0,
                1,
                u32::from(libc::PACKET_OUTGOING),
            ),
            bpf(BPF_RET | BPF_K, 0, 0, SNAP),
            bpf(BPF_RET | BPF_K, 0, 0, 0),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        setopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        setopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V2)?;
        let req = libc::tpacket_req {
            tp_block_size: BLOCK,
            tp_block_nr: BLOCKS,
            tp_frame_size: FRAME,
            tp_frame_nr: FRAMES,
        };
        setopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        // SAFETY: maps the ring the kernel just made for this socket.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (BLOCK * BLOCKS) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let tap = EntryTap {
            _fd: fd,
            ring: ring.cast(),
            head: 0,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set make it a bind to ifindex.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds our socket to a valid sockaddr_ll of the size passed.
        cvt(unsafe {
            libc::bind(
                tap._fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(tap)
    }

    fn frame(&self, i: u32) -> *mut libc::tpacket2_hdr {
        // Frames do not cross blocks: BLOCK is a multiple of FRAME.
        // SAFETY: i < FRAMES, so the frame lies inside the mapping.
        unsafe { self.ring.add((i % FRAMES * FRAME) as usize).cast() }
    }

    fn owned_by_us(&self, i: u32) -> bool {
        // SAFETY: reads a frame header's status word in the mapping, which the kernel writes.
        let status = unsafe { std::ptr::read_volatile(&(*self.frame(i)).tp_status) };
        fence(Ordering::Acquire);
        status & libc::TP_STATUS_USER != 0
    }

    /// Hands the `n` frames from the head back to the kernel.
    fn release(&mut self, n: u32) {
        for _ in 0..n {
            fence(Ordering::Release);
            // SAFETY: hands a frame we own back to the kernel.
            unsafe {
                std::ptr::write_volatile(
                    &mut (*self.frame(self.head)).tp_status,
                    libc::TP_STATUS_KERNEL,
                )
            };
            self.head = (self.head + 1) % FRAMES;
        }
    }

    /// The kernel's time (`CLOCK_REALTIME` nanoseconds) at which `packet` (an IP packet just
    /// read from the device) was sent into it; None if the tap did not see it.
    pub fn entered(&mut self, packet: &[u8]) -> Option<u64> {
        let want = &packet[..packet.len().min(MATCH)];
        for k in 0..FRAMES {
            let i = (self.head + k) % FRAMES;
            if !self.owned_by_us(i) {
                return None;
            }
            let h = self.frame(i);
            // SAFETY: the frame is ours (status USER); its header and the snapped bytes at
            // tp_net lie inside it.
            let (len, ts, data) = unsafe {
                let hdr = &*h;
                let net = usize::from(hdr.tp_net);
                let snap = (hdr.tp_snaplen as usize).min((FRAME as usize).saturating_sub(net));
                let data = std::slice::from_raw_parts(h.cast::<u8>().add(net), snap);
                let ts = u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec);
                (hdr.tp_len as usize, ts, data)
            };
            if len == packet.len() && data.get(..want.len()) == Some(want) {
                self.release(k + 1);
                return Some(ts);
            }
        }
        // A ring full of frames that match nothing would hide every later packet: give them
        // back.
        self.release(FRAMES);
        None
    }
}

const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;

fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}
