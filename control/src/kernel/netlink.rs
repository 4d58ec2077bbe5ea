//! The few rtnetlink requests the kernel interfaces need (addresses and host routes), over a
//! synchronous NETLINK_ROUTE socket: message types from `netlink-packet-route`, the socket from
//! `netlink-sys`. Synchronous on purpose: each request is a local kernel call answered at once
//! (an ack or an errno), made at start and on a reload, never per packet.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The routing protocol number vipd's routes carry (`ip route show proto 252`), so an operator
/// tells them from their own; not one of the numbers iproute2 names.
pub const VIPD_ROUTE_PROTOCOL: u8 = 252;

/// How long a request may wait for the kernel's answer: it answers at once, so this only
/// guards against a lost ack ever holding the control thread.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// An open rtnetlink socket.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// Open and bind a NETLINK_ROUTE socket.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let tv = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a valid socket descriptor and a timeval of the size passed.
        let ret = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { socket, seq: 0 })
    }

    /// Add `addr/prefix_len` to interface `index`; IPv6 without duplicate address detection
    /// (vipd itself answers solicitations for the port's address, which would fail it).
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let msg = address_message(index, addr, prefix_len);
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Remove `addr/prefix_len` from interface `index`.
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let msg = address_message(index, addr, prefix_len);
        self.request(RouteNetlinkMessage::DelAddress(msg), 0)
    }

    /// Add a host route to `dst` via `gateway` out of interface `index` (main table).
    pub fn add_host_route(&mut self, index: u32, dst: IpAddr, gateway: IpAddr) -> io::Result<()> {
        let msg = host_route_message(index, dst, gateway);
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Remove the host route [`Netlink::add_host_route`] added.
    pub fn del_host_route(&mut self, index: u32, dst: IpAddr, gateway: IpAddr) -> io::Result<()> {
        let msg = host_route_message(index, dst, gateway);
        self.request(RouteNetlinkMessage::DelRoute(msg), 0)
    }

    /// Send one request and wait for its ack (or the kernel's errno).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = answer.header.length as usize;
                if answer.header.sequence_number == seq {
                    if let NetlinkPayload::Error(e) = answer.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }
}

fn family(addr: &IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(&addr);
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Address(addr));
    match addr {
        IpAddr::V4(_) => msg.attributes.push(AddressAttribute::Local(addr)),
        IpAddr::V6(_) => msg
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad)),
    }
    msg
}

fn host_route_message(index: u32, dst: IpAddr, gateway: IpAddr) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(&dst);
    msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Other(VIPD_ROUTE_PROTOCOL);
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    msg.attributes.push(RouteAttribute::Oif(index));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn ipv6_addresses_skip_duplicate_address_detection() {
        let m = address_message(7, "fd00::10".parse().unwrap(), 64);
        assert_eq!(m.header.index, 7);
        assert_eq!(m.header.prefix_len, 64);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        let m4 = address_message(7, "10.0.0.10".parse().unwrap(), 24);
        assert!(m4
            .attributes
            .iter()
            .all(|a| !matches!(a, AddressAttribute::Flags(_))));
    }

    #[test]
    fn host_routes_are_full_length_and_tagged() {
        let m = host_route_message(3, "192.0.2.7".parse().unwrap(), "10.0.0.1".parse().unwrap());
        assert_eq!(m.header.destination_prefix_length, 32);
        assert_eq!(m.header.protocol, RouteProtocol::Other(VIPD_ROUTE_PROTOCOL));
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        assert_eq!(&buf[..8], &[libc::AF_INET as u8, 32, 0, 0, 254, 252, 0, 1]);
        let m6 = host_route_message(
            3,
            "2001:db8::7".parse().unwrap(),
            "fd00::1".parse().unwrap(),
        );
        assert_eq!(m6.header.destination_prefix_length, 128);
    }
}
