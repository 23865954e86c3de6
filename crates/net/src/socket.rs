//! One synchronous rtnetlink conversation: send a request, read until its ack or the end
//! of its dump. Blocking calls on a socket of our own: no async runtime, no thread, so
//! the engine's single-threaded supervisor can call it between `create` and `start`.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, Result};

/// An rtnetlink socket, bound to the network namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let sock = Socket::new(NETLINK_ROUTE).map_err(|e| Error::kernel("opening rtnetlink", e))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Sends `msg` with `flags` (plus REQUEST and ACK) and waits for the kernel's answer.
    /// `what` names the operation and its subject for the error.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> Result<()> {
        self.exchange(msg, flags | NLM_F_ACK, what).map(drop)
    }

    /// A GET that answers with one message (a link by name, say).
    pub fn get(&mut self, msg: RouteNetlinkMessage, what: &str) -> Result<RouteNetlinkMessage> {
        self.exchange(msg, 0, what)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol(format!("{what}: the kernel sent no answer")))
    }

    /// A dump: every message the kernel sends until NLMSG_DONE.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP, what)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock
            .send_to(&buf, &SocketAddr::new(0, 0), 0)
            .map_err(|e| Error::kernel(what, e))?;

        let dump = flags & NLM_F_DUMP != 0;
        let acked = flags & NLM_F_ACK != 0;
        let mut out = Vec::new();
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(|e| Error::kernel(what, e))?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| Error::Protocol(format!("{what}: undecodable answer: {e}")))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(Error::Protocol(format!("{what}: zero-length message")));
                }
                off += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    // A late answer to an earlier request that gave up: not ours.
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(_) => return Err(Error::kernel(what, e.to_io())),
                    },
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && !acked {
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(Error::kernel(
                            what,
                            io::Error::from_raw_os_error(libc::ENOBUFS),
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
}
