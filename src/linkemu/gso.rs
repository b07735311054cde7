//! TCP segmentation offload for the emulator's TUN devices.
//!
//! The TUN devices carry a `virtio_net_hdr` before each packet (`IFF_VNET_HDR`) and announce
//! checksum and TCP/IPv4 segmentation offload (`TUN_F_CSUM | TUN_F_TSO4`). A sender's stack then
//! hands the device whole TCP super-packets of up to 64 KiB instead of cutting them into
//! MTU-sized segments itself, and leaves checksums partial: far less work per byte for the
//! sender, and one `read` per super-packet for the packet thread.
//!
//! The link model still sees the packets a real link carries: [`split`] cuts a super-packet
//! into the segments the kernel would have sent (same sizes, sequence numbers, IP ids and
//! flags), each of which the model then serializes, queues, delays or drops on its own. A
//! segment is written to the far end with a partial checksum (`NEEDS_CSUM`, as the sender's
//! stack left it); the receiving stack accepts that as checksummed, as it does for packets
//! between local devices. Packets without segmentation pass through with their header as read.

/// `sizeof(struct virtio_net_hdr)`, TUN's default `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_ECN: u8 = 0x80;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Appends to `out` the packets that `frame` (`virtio_net_hdr` then an IP packet), read from a
/// TUN device, stands for, each as its own frame (header included) in a buffer from `pool`: the
/// segments of a TCP/IPv4 super-packet, or else the frame itself (no segmentation asked for, a
/// kind the devices do not announce, or a malformed header: passed on whole, and the receiving
/// stack deals with it).
pub fn split(frame: &[u8], pool: &mut Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>) {
    if !segment(frame, pool, out) {
        let mut b = pool.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(frame);
        out.push(b);
    }
}

/// The IP packet of a frame (what follows its `virtio_net_hdr`).
pub fn packet(frame: &[u8]) -> &[u8] {
    &frame[VNET_HDR_LEN.min(frame.len())..]
}

/// The Internet checksum (RFC 1071) of `data`: the complement of its ones'-complement sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum16(data, 0))
}

/// [`split`]'s segmentation: false, appending nothing, when `frame` is not a TCP/IPv4
/// super-packet that can be cut.
fn segment(frame: &[u8], pool: &mut Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>) -> bool {
    if frame.len() <= VNET_HDR_LEN {
        return false;
    }
    let gso_type = frame[1] & !GSO_ECN;
    let gso_size = usize::from(u16::from_ne_bytes([frame[4], frame[5]]));
    if gso_type != GSO_TCPV4 || gso_size == 0 {
        return false;
    }
    let p = &frame[VNET_HDR_LEN..];
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != libc::IPPROTO_TCP as u8 {
        return false;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl + 20 {
        return false;
    }
    let thl = usize::from(p[ihl + 12] >> 4) * 4;
    let hdr = ihl + thl;
    if thl < 20 || p.len() <= hdr {
        return false;
    }
    let payload = &p[hdr..];
    let id0 = u16::from_be_bytes([p[4], p[5]]);
    let seq0 = u32::from_be_bytes([p[ihl + 4], p[ihl + 5], p[ihl + 6], p[ihl + 7]]);
    let flags = p[ihl + 13];
    let count = payload.len().div_ceil(gso_size);
    for (i, chunk) in payload.chunks(gso_size).enumerate() {
        let mut b = pool.pop().unwrap_or_default();
        b.clear();
        // virtio_net_hdr: the checksum is left partial, no further segmentation.
        b.extend_from_slice(&[F_NEEDS_CSUM, GSO_NONE, 0, 0, 0, 0]);
        b.extend_from_slice(&(ihl as u16).to_ne_bytes());
        b.extend_from_slice(&16u16.to_ne_bytes());
        b.extend_from_slice(&p[..hdr]);
        b.extend_from_slice(chunk);
        let s = &mut b[VNET_HDR_LEN..];
        let total = (hdr + chunk.len()) as u16;
        s[2..4].copy_from_slice(&total.to_be_bytes());
        s[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        s[10..12].copy_from_slice(&[0, 0]);
        let ip_sum = checksum(&s[..ihl]);
        s[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = &mut s[ihl..];
        let seq = seq0.wrapping_add((i * gso_size) as u32);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        t[13] = f;
        // Partial checksum: the pseudo-header's sum, folded, not complemented; the receiver
        // (or a NIC) adds the segment's own bytes.
        let tcp_len = (thl + chunk.len()) as u32;
        let pseudo = sum16(&p[12..20], 0) + u32::from(libc::IPPROTO_TCP as u8) + tcp_len;
        t[16..18].copy_from_slice(&fold(pseudo).to_be_bytes());
        out.push(b);
    }
    true
}

/// The ones'-complement sum of `data` as 16-bit big-endian words, added to `acc` (unfolded).
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO super-packet as a sender's stack hands it to the device: 10.0.0.1:1000 →
    /// 10.0.0.2:80, 32-byte TCP header (timestamps), `len` bytes of payload, PSH|FIN|CWR|ACK.
    fn super_packet(len: usize, mss: u16) -> Vec<u8> {
        let mut f = vec![F_NEEDS_CSUM, GSO_TCPV4, 52, 0];
        f.extend_from_slice(&mss.to_ne_bytes());
        f.extend_from_slice(&20u16.to_ne_bytes());
        f.extend_from_slice(&16u16.to_ne_bytes());
        let total = (20 + 32 + len) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 32];
        tcp[0..2].copy_from_slice(&1000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
        tcp[12] = 8 << 4;
        tcp[13] = TCP_CWR | 0x10 | TCP_PSH | TCP_FIN;
        f.extend_from_slice(&tcp);
        f.extend((0..len).map(|i| (i % 251) as u8));
        f
    }

    /// Completes a partial TCP checksum as the receiver would, then checks it the receiver's
    /// way: the sum over the pseudo-header and the segment comes to 0xffff.
    fn tcp_checksum_ok(seg: &[u8]) -> bool {
        let ihl = usize::from(seg[0] & 0x0f) * 4;
        let mut s = seg.to_vec();
        let partial = sum16(&s[ihl..], 0);
        let full = !fold(partial);
        s[ihl + 16..ihl + 18].copy_from_slice(&full.to_be_bytes());
        let pseudo = sum16(&s[12..20], 0) + 6 + (s.len() - ihl) as u32;
        fold(sum16(&s[ihl..], pseudo)) == 0xffff
    }

    #[test]
    fn cuts_a_super_packet_as_the_kernel_would() {
        let f = super_packet(4000, 1448);
        let mut out = Vec::new();
        split(&f, &mut Vec::new(), &mut out);
        assert_eq!(out.len(), 3);
        let payload = &f[VNET_HDR_LEN + 52..];
        let mut at = 0;
        for (i, b) in out.iter().enumerate() {
            assert_eq!(&b[..2], &[F_NEEDS_CSUM, GSO_NONE]);
            let s = &b[VNET_HDR_LEN..];
            let len = if i < 2 { 1448 } else { 4000 - 2 * 1448 };
            assert_eq!(s.len(), 52 + len);
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x1234 + i as u16);
            assert_eq!(checksum(&s[..20]), 0, "IP header checksum");
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(
                seq,
                0xffff_f000u32.wrapping_add(at as u32),
                "sequence wraps"
            );
            let flags = s[33];
            assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR on the first only");
            assert_eq!(
                flags & (TCP_PSH | TCP_FIN) != 0,
                i == 2,
                "PSH, FIN on the last"
            );
            assert_eq!(&s[52..], &payload[at..at + len]);
            assert!(tcp_checksum_ok(s), "segment {i}");
            at += len;
        }
        assert_eq!(at, 4000);
    }

    #[test]
    fn packets_without_segmentation_stay_whole() {
        let mut pool = Vec::new();
        let mut f = super_packet(1000, 1448);
        f[1] = GSO_NONE;
        let mut udp = super_packet(3000, 1448);
        udp[1] = 3; // VIRTIO_NET_HDR_GSO_UDP: not announced, passed on whole
        let short = f[..VNET_HDR_LEN + 30].to_vec();
        for frame in [f, udp, short] {
            let mut out = Vec::new();
            split(&frame, &mut pool, &mut out);
            assert_eq!(out, vec![frame.clone()]);
            assert_eq!(packet(&out[0]), &frame[VNET_HDR_LEN..]);
        }
    }

    #[test]
    fn reuses_pooled_buffers() {
        let mut pool = vec![vec![7u8; 3000], vec![9u8; 10]];
        let mut out = Vec::new();
        split(&super_packet(2000, 1000), &mut pool, &mut out);
        assert_eq!(out.len(), 2);
        assert!(pool.is_empty());
        assert_eq!(out[0].len(), VNET_HDR_LEN + 52 + 1000);
        assert_eq!(out[1].len(), VNET_HDR_LEN + 52 + 1000);
    }
}
